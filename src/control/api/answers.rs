//! The answers of the management API as types, one per answer: the server
//! fills them in (borrowing what it can: [`Text`] is a `Cow`) and serializes
//! them; the `bsc` client ([`crate::control::client`]) reads the same types,
//! the fields it shows by their keys ([`ReadFields`], in `answers/read.rs`,
//! whose tests write each answer as the server does and read it back, so a
//! field renamed here and not there fails them).
//!
//! The wire format is the contract (AIT's shapes, `shared/reference/`): field
//! order is declaration order, and the answers that were once `json!` objects
//! (`/health`, rotate, `DELETE /capturers`) keep their fields in alphabetical
//! order, as `json!` wrote them. A field an older bsc did not send reads as
//! empty; a field the client does not show is not read: reading it would be
//! code in every binary for nothing.
//!
//! Not here: a config entry (`GET /`, `/<name>/config`, the start and stop
//! answers) is built by `config_entry` (`api.rs`) from the handler's keys; the
//! client reads the part of it it shows as [`EntrySummary`]. An error is
//! `{"error": "..."}` ([`ErrorAnswer`]), written by
//! [`crate::control::http::response::Response::error`] for every layer.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::manager::TcpStatus;
use crate::ops::hooks::ShipStatus;
use crate::units::sequence::SequenceReport;

mod read;
pub use read::{from_object, ReadFields};

/// Text the server lends from its state and the client owns.
pub type Text<'a> = Cow<'a, str>;

/// An address as AIT writes it: `[host, port]` (`["", 8500]`; for ethernet
/// the interface and the EtherType).
pub type Address<'a> = (Text<'a>, u16);

/// `GET /stats`: per address key (`"['', 8500]"`), its handlers' entries. The
/// server writes the groups in the order the sockets were opened
/// (`api/walk.rs`); read back, they are in key order.
pub type Stats<'a> = BTreeMap<String, Vec<StatsEntry<'a>>>;

/// One entry of `GET /stats`: AIT's four fields, then plain numbers.
#[derive(Debug, Default, Serialize)]
pub struct StatsEntry<'a> {
    pub name: Text<'a>,
    /// AIT's words, AIT's meaning: reads (datagrams, TCP reads, frames), their
    /// bytes and the lifetime rate of those bytes.
    pub reads: u64,
    pub data_read_length: String,
    pub approx_data_rate: String,
    /// Units: the reads, or with framing the units cut from them.
    pub packets: u64,
    pub bytes: u64,
    pub rate_bytes_per_s: f64,
    pub files_opened: u64,
    pub current_file: Option<String>,
    pub current_file_bytes: u64,
    pub last_packet_at: Option<String>,
    pub write_errors: u64,
    pub records_lost: u64,
    pub truncated: u64,
    pub rotations_calendar: u64,
    pub rotations_size: u64,
    pub rotations_count: u64,
    pub rotations_forced: u64,
    pub files_deleted: u64,
    /// Open files deleted or moved behind bsc's back.
    pub files_vanished: u64,
    /// Closed files the disk budget deleted before their `on_close` hook ended.
    pub hooks_not_run: u64,
    /// `ok`, or `degraded` while writes fail or the disk budget stops writing.
    pub state: Text<'a>,
    /// `config`, `api` (added by a request of this run) or `restored` (added
    /// over the API before the last start and restored from the state file).
    pub origin: Text<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub degraded_reason: Option<String>,
    pub clock_synchronized: bool,
    /// The socket's bound local address.
    /// udp: the bound address; tcp: the connection's, while connected (as
    /// `/capturers` shows it); ethernet: the interface.
    pub local_address: Option<String>,
    /// The receive buffer the kernel granted the socket.
    pub rcvbuf_granted: usize,
    /// Units the kernel dropped on this socket for lack of buffer space.
    pub kernel_drops: u32,
    /// tcp only (absent for other sockets, [`TcpStatus`]): whether the
    /// connection is up, connections after the first, the last connection
    /// error and when it was last connected (`null`: never, or none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connected: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reconnects: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_connected_at: Option<Option<String>>,
    /// Losses of synchronization while framing (0 without `framing`).
    pub framing_errors: u64,
    /// Bytes in no unit: garbage, bad units, partial units at a disconnect.
    pub bytes_discarded: u64,
    /// TM frames whose FECF failed (0 without `fecf`).
    pub crc_errors: u64,
    /// Units `pre_write_transforms` filtered out.
    pub filtered: u64,
    /// Only with `sequence_check`: totals, then per stream (at most 256; units of
    /// further streams count as `other`).
    /// The client reads the totals only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sequence: Option<SequenceReport>,
    /// Only for a handler with `ship` (or files of its key waiting): its backlog
    /// and how shipping goes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ship: Option<ShipStatus>,
    /// Only for a handler with `forward`: each target, in the key's order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forward: Option<Vec<ForwardStatus>>,
}

/// One forward target of a handler in `GET /stats`.
#[derive(Debug, Default, Serialize)]
pub struct ForwardStatus {
    /// Its URL (`udp://127.0.0.1:9000`).
    pub target: String,
    /// `ready` (udp), `connected`, `connecting`, `backoff` (tcp) or `error`.
    pub state: String,
    pub units_sent: u64,
    pub bytes_sent: u64,
    pub units_dropped: u64,
    /// Units and bytes waiting in its queue.
    pub queued_units: usize,
    pub queued_bytes: usize,
    pub last_error: Option<String>,
}

impl StatsEntry<'_> {
    /// The TCP fields of a capturer's [`TcpStatus`] (`None`: not TCP).
    pub fn set_tcp(&mut self, tcp: Option<TcpStatus>) {
        if let Some(t) = tcp {
            self.connected = Some(t.connected);
            self.reconnects = Some(t.reconnects);
            self.last_error = Some(t.last_error);
            self.last_connected_at = Some(t.last_connected_at);
        }
    }

    /// The last connection error of a TCP handler's socket.
    pub fn tcp_error(&self) -> Option<&str> {
        self.last_error.as_ref()?.as_deref()
    }
}

/// One entry of `GET /capturers`: a socket.
#[derive(Debug, Default, Serialize)]
pub struct CapturerEntry<'a> {
    pub address: Address<'a>,
    /// The address key its handlers are grouped under in `/` and `/stats`.
    pub key: String,
    pub conn_type: Text<'a>,
    /// udp: the bound address; tcp: the connection's local address while connected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ifindex: Option<u32>,
    /// `listening`, `connecting`, `connected`, `backoff` or `error`.
    pub state: Text<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub rcvbuf_granted: usize,
    pub kernel_drops: u32,
    /// The names of its handlers.
    pub handlers: Vec<Text<'a>>,
}

/// One handler of `GET /series` (`{"now", "step_s", "handlers": [...]}`).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SeriesEntry<'a> {
    pub name: Text<'a>,
    pub address: Address<'a>,
    /// Units per second, oldest first.
    pub packets: Vec<u32>,
    /// Bytes per second, oldest first.
    pub bytes: Vec<u32>,
}

/// One handler of `GET /<name>/files`. The server writes it in pieces
/// (`api/files.rs`), these fields in this order.
#[derive(Debug, Default, Serialize)]
pub struct HandlerFiles<'a> {
    pub address: Address<'a>,
    /// Oldest first, the open one last.
    pub files: Vec<FileEntry<'a>>,
    pub name: Text<'a>,
}

/// One file of `GET /<name>/files`.
#[derive(Debug, Default, Serialize)]
pub struct FileEntry<'a> {
    pub path: String,
    pub bytes: u64,
    /// Unknown (null) only for files an older bsc closed.
    pub records: Option<u64>,
    pub first_record_at: Option<String>,
    pub last_record_at: Option<String>,
    /// `open` (being written) or `closed` (final).
    pub state: Text<'a>,
    /// Whether the system clock was synchronised the whole time the file was
    /// open: `synchronized`, `unsynchronized` (part of the time at least) or
    /// `unknown` (files a crash left open, resumed or appended to, closed by
    /// an earlier version).
    pub clock: Text<'a>,
    /// The largest max error the kernel gave the clock meanwhile, in
    /// microseconds (`null`: unknown).
    pub clock_max_error_us: Option<u64>,
}

/// One handler of the `POST /<name>/rotate` answer.
#[derive(Debug, Default, Serialize)]
pub struct Rotated<'a> {
    pub address: Address<'a>,
    /// The file opened next.
    pub log_file_path: String,
    pub name: Text<'a>,
    /// The file closed, `null` if none was open.
    pub previous_file: Option<String>,
}

/// The `DELETE /capturers` answer: the socket closed and the config entries
/// of the handlers stopped with it (`E`: the server's entries, or what the
/// client reads of them).
#[derive(Debug, Default, Serialize)]
pub struct CapturerStopped<'a, E> {
    pub address: Address<'a>,
    pub conn_type: Text<'a>,
    pub key: String,
    pub stopped: Vec<E>,
}

/// What the client reads of a config entry (`GET /`, `/<name>/config`, the
/// start and stop answers, [`CapturerStopped::stopped`]); the entry itself has
/// every key of the handler (`config_entry`, `api.rs`).
#[derive(Debug, Default)]
#[cfg_attr(test, derive(Serialize))]
pub struct EntrySummary {
    pub handler: HandlerSummary,
    pub conn_type: String,
    pub address: Address<'static>,
}

/// What the client reads of a config entry's `handler` dict.
#[derive(Debug, Default)]
#[cfg_attr(test, derive(Serialize))]
pub struct HandlerSummary {
    pub name: String,
    /// The folder of the file name rendered now.
    pub log_dir: String,
    pub file_name_pattern: String,
}

/// `GET /health`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Health<'a> {
    /// Capture sockets open.
    pub capturers: usize,
    /// The wall clock is after 2020 and synchronised (NTP).
    pub clock_synchronized: bool,
    /// Handlers that cannot write, or that the disk budget stopped.
    pub degraded_handlers: Vec<Text<'a>>,
    /// `null` when the root cannot be looked at.
    pub disk: Option<Disk>,
    pub disk_full: bool,
    pub handlers: usize,
    pub http_connections: usize,
    /// Why bsc is degraded, one line each.
    pub reasons: Vec<String>,
    /// `ok`, or `degraded` when there is a reason.
    pub status: Text<'a>,
    pub uptime_s: i64,
    pub version: Text<'a>,
}

/// The root's file system as `/health` shows it.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Disk {
    /// The free bytes the disk budget keeps; `null` without a budget.
    pub budget_bytes: Option<u64>,
    pub free_bytes: u64,
    /// The budget has stopped writing.
    pub full: bool,
    pub total_bytes: u64,
}

/// Every refusal: a 4xx (or 5xx) status and this body.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ErrorAnswer<'a> {
    pub error: Text<'a>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_answer_is_what_the_server_writes() {
        let r = crate::control::http::response::Response::error(404, "no route");
        let read: ErrorAnswer = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(read.error, "no route");
        assert_eq!(
            serde_json::to_vec(&ErrorAnswer {
                error: "no route".into()
            })
            .unwrap(),
            r.body
        );
    }

    /// `/health`, rotate and `DELETE /capturers` were `json!` objects: their
    /// keys stay in its (alphabetical) order.
    #[test]
    fn former_json_objects_keep_their_key_order() {
        use serde_json::{json, to_string};
        let health = Health {
            capturers: 1,
            clock_synchronized: true,
            degraded_handlers: vec!["a".into()],
            disk: Some(Disk {
                budget_bytes: None,
                free_bytes: 5,
                full: false,
                total_bytes: 9,
            }),
            disk_full: false,
            handlers: 2,
            http_connections: 3,
            reasons: vec!["r".into()],
            status: "degraded".into(),
            uptime_s: 7,
            version: "0.1.0".into(),
        };
        let want = json!({"status": "degraded", "reasons": ["r"], "degraded_handlers": ["a"],
            "disk_full": false, "disk": {"free_bytes": 5, "total_bytes": 9, "budget_bytes": null,
            "full": false}, "clock_synchronized": true, "version": "0.1.0", "uptime_s": 7,
            "handlers": 2, "capturers": 1, "http_connections": 3});
        assert_eq!(to_string(&health).unwrap(), want.to_string());
        let rotated = Rotated {
            address: ("".into(), 8500),
            log_file_path: "/d/2.pcap".into(),
            name: "tlm".into(),
            previous_file: None,
        };
        let want = json!({"name": "tlm", "address": ["", 8500], "previous_file": null,
            "log_file_path": "/d/2.pcap"});
        assert_eq!(to_string(&rotated).unwrap(), want.to_string());
        let stopped = CapturerStopped {
            address: ("".into(), 8500),
            conn_type: "udp".into(),
            key: "['', 8500]".into(),
            stopped: vec![json!({"b": 1, "a": 2})],
        };
        let want = json!({"address": ["", 8500], "key": "['', 8500]", "conn_type": "udp",
            "stopped": [{"a": 2, "b": 1}]});
        assert_eq!(to_string(&stopped).unwrap(), want.to_string());
    }

    #[test]
    fn stats_entries_read_back_with_their_tcp_state() {
        let mut entry = StatsEntry {
            name: "ground".into(),
            state: "ok".into(),
            origin: "config".into(),
            ..StatsEntry::default()
        };
        entry.set_tcp(Some(TcpStatus {
            connected: false,
            reconnects: 4,
            last_error: Some("connection refused".into()),
            last_connected_at: None,
        }));
        let text = serde_json::to_string(&entry).unwrap();
        assert!(
            text.contains(r#""kernel_drops":0,"connected":false,"reconnects":4,"last_error":"connection refused","last_connected_at":null,"framing_errors":0"#),
            "{text}"
        );
        let object = |text: &str| serde_json::from_str(text).unwrap();
        let back: StatsEntry = from_object(object(&text)).unwrap();
        assert_eq!(back.connected, Some(false));
        assert_eq!(back.tcp_error(), Some("connection refused"));
        let udp: StatsEntry = from_object(object(
            r#"{"name": "tlm", "packets": 3, "sequence": {"missing": 2, "streams": []}}"#,
        ))
        .unwrap();
        assert!(udp.connected.is_none() && udp.tcp_error().is_none());
        assert_eq!((udp.name.as_ref(), udp.packets), ("tlm", 3));
        assert_eq!(udp.sequence.map(|s| s.totals.missing), Some(2));
        let text = serde_json::to_string(&StatsEntry::default()).unwrap();
        assert!(
            !text.contains("connected") && !text.contains("sequence"),
            "{text}"
        );
    }
}
