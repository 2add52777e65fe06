//! `GET /metrics`: the Prometheus text exposition 0.0.4, produced in pieces
//! ([`crate::control::http::body`]) as the socket drains: a [`Walk`] goes family by
//! family, and within a family handler by handler (by id) or capturer by
//! capturer (by creation order), each piece reading the manager as it is then.
//! A handler added or gone between pieces is in the families still to come,
//! or not: every family is written once, head first, so the text stays valid
//! whatever changes meanwhile. The `bsc_ship_*` families (six lines per
//! handler key that ships) and the process families are written in one piece
//! each.

use std::fmt::Write;

use super::forward_metrics::{self, FORWARD};
use super::health::clock_ok;
use super::Context;
use crate::control::http::body::PIECE;
use crate::manager::handler::Handler;
use crate::manager::unit_path::UnitPath;
use crate::manager::{Capturer, HandlerId, TcpStatus};
use crate::ops::hooks::{name_of_key, ShipStatus};
use crate::sys;
use crate::units::sequence::StreamReport;

/// The content type of the answer.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Where a walk over `/metrics` is: its family, and the next handler id or
/// capturer (creation sequence) in it; `None` before the family's head.
#[derive(Debug, Default)]
pub struct Walk {
    family: usize,
    next: Option<u64>,
}

/// One family of series (or a group of families written at once).
#[derive(Clone, Copy)]
enum Family {
    /// A value per handler.
    Handler(Metric),
    /// `bsc_handler_up`.
    Up,
    /// The `bsc_ship_*` families, at once (a series per key that ships).
    Ship,
    /// `bsc_kernel_drops_total` per capturer of datagrams or frames.
    KernelDrops,
    /// `bsc_capturer_connected` per TCP capturer.
    Connected,
    /// `bsc_reconnects_total` per TCP capturer.
    Reconnects,
    /// `bsc_rotations_total` per handler and reason.
    Rotations,
    /// A value per sequence-checked stream of each handler.
    Sequence(StreamMetric),
    /// A value per forward target of each handler (`forward_metrics.rs`).
    Forward(usize),
    /// The process and build families, at once.
    Process,
}

/// Every family, in the order they are written.
fn families() -> Vec<Family> {
    let mut all: Vec<Family> = PER_HANDLER.into_iter().map(Family::Handler).collect();
    all.extend([
        Family::Up,
        Family::Ship,
        Family::KernelDrops,
        Family::Connected,
        Family::Reconnects,
        Family::Rotations,
    ]);
    all.extend(SEQUENCE.into_iter().map(Family::Sequence));
    all.extend((0..FORWARD.len()).map(Family::Forward));
    all.push(Family::Process);
    all
}

/// Appends the next piece of `/metrics` (about [`PIECE`] bytes) to `out`.
/// Returns whether more follows.
pub fn produce(walk: &mut Walk, cx: &Context, out: &mut Vec<u8>) -> bool {
    let families = families();
    let mut text = String::new();
    while text.len() < PIECE {
        let Some(&family) = families.get(walk.family) else {
            break;
        };
        let done = match walk.next {
            None => {
                head(family, &mut text);
                walk.next = Some(0);
                false
            }
            Some(from) => lines(family, cx, from, &mut text, walk),
        };
        if done {
            walk.family += 1;
            walk.next = None;
        }
    }
    out.extend_from_slice(text.as_bytes());
    walk.family < families.len()
}

/// Writes the `# HELP` and `# TYPE` lines of a family (none for the groups
/// that write their own).
fn head(family: Family, out: &mut String) {
    let (name, kind, help) = match family {
        Family::Handler((name, kind, help, _)) => (name, kind, help),
        Family::Up => (
            "bsc_handler_up",
            "gauge",
            "Whether a handler can write (1) or is degraded (0).",
        ),
        Family::KernelDrops => (
            "bsc_kernel_drops_total",
            "counter",
            "Units the kernel dropped on a capture socket for lack of buffer space.",
        ),
        Family::Connected => (
            "bsc_capturer_connected",
            "gauge",
            "Whether a TCP capturer's connection to its peer is up.",
        ),
        Family::Reconnects => (
            "bsc_reconnects_total",
            "counter",
            "Connections to a TCP capturer's peer after the first.",
        ),
        Family::Rotations => (
            "bsc_rotations_total",
            "counter",
            "Files closed for the next one, by reason.",
        ),
        Family::Sequence((name, help, _, _)) => (name, "counter", help),
        Family::Forward(i) => return forward_metrics::head(i, out),
        Family::Ship | Family::Process => return,
    };
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Writes the series of `family` from handler id or capturer sequence `from`
/// on, until the piece is full (`walk.next` then says where to go on).
/// Returns whether the family is done.
fn lines(family: Family, cx: &Context, from: u64, out: &mut String, walk: &mut Walk) -> bool {
    match family {
        Family::Ship => {
            ship_metrics(out, cx);
            true
        }
        Family::Process => {
            process_metrics(out, cx);
            true
        }
        Family::KernelDrops | Family::Connected | Family::Reconnects => {
            let mut capturers = cx.manager.capturers();
            capturers.retain(|(_, c)| c.seq >= from);
            for (_, cap) in capturers {
                capturer_lines(family, cap, out);
                walk.next = Some(cap.seq + 1);
                if out.len() >= PIECE {
                    return false;
                }
            }
            true
        }
        _ => {
            let from = from as HandlerId;
            for (id, h) in cx.manager.handlers().skip_while(|&(id, _)| id < from) {
                handler_lines(family, h, out);
                walk.next = Some(id as u64 + 1);
                if out.len() >= PIECE {
                    return false;
                }
            }
            true
        }
    }
}

/// The series of a per-handler family for one handler.
fn handler_lines(family: Family, h: &Handler, out: &mut String) {
    let labels = handler_labels(h);
    match family {
        Family::Handler((name, _, _, value)) => {
            let _ = writeln!(out, "{name}{{{labels}}} {}", value(h));
        }
        Family::Up => {
            let up = h.degraded().is_none() && !h.suspended();
            let _ = writeln!(out, "bsc_handler_up{{{labels}}} {}", u8::from(up));
        }
        Family::Rotations => {
            let st = &h.stats();
            for (reason, n) in [
                ("calendar", st.rotations_calendar),
                ("size", st.rotations_size),
                ("count", st.rotations_count),
                ("forced", st.rotations_forced),
            ] {
                let _ = writeln!(
                    out,
                    "bsc_rotations_total{{{labels},reason=\"{reason}\"}} {n}"
                );
            }
        }
        Family::Sequence((name, _, master, value)) => {
            // Per sequence-checked stream: at most 256 per handler (sequence::MAX_STREAMS).
            let Some(report) = h.units().and_then(UnitPath::sequence) else {
                return;
            };
            let list = if master {
                &report.master_channels
            } else {
                &report.streams
            };
            for st in list {
                let _ = writeln!(
                    out,
                    "{name}{{{labels},stream=\"{}\"}} {}",
                    label(&st.id),
                    value(st)
                );
            }
        }
        Family::Forward(i) => forward_metrics::lines(i, h, &labels, out),
        _ => {}
    }
}

/// The series of a per-capturer family for one capturer.
fn capturer_lines(family: Family, cap: &Capturer, out: &mut String) {
    let tcp: Option<TcpStatus> = cap.tcp_status();
    match (family, tcp) {
        // Kernel drops mean something for datagram and frame sockets, not TCP.
        (Family::KernelDrops, _) if cap.conn_type != crate::config::ConnType::Tcp => {
            let _ = writeln!(
                out,
                "bsc_kernel_drops_total{{{}}} {}",
                capturer_labels(cap),
                cap.kernel_drops()
            );
        }
        (Family::Connected, Some(t)) => {
            let _ = writeln!(
                out,
                "bsc_capturer_connected{{{}}} {}",
                capturer_labels(cap),
                u8::from(t.connected)
            );
        }
        (Family::Reconnects, Some(t)) => {
            let _ = writeln!(
                out,
                "bsc_reconnects_total{{{}}} {}",
                capturer_labels(cap),
                t.reconnects
            );
        }
        _ => {}
    }
}

type Metric = (
    &'static str,
    &'static str,
    &'static str,
    fn(&Handler) -> f64,
);

const PER_HANDLER: [Metric; 14] = [
    (
        "bsc_packets_total",
        "counter",
        "Records: datagrams, reads or frames, or the units cut from them, to be written (not filtered ones).",
        |h| h.stats().packets as f64,
    ),
    (
        "bsc_bytes_total",
        "counter",
        "Payload bytes of those records.",
        |h| h.stats().bytes as f64,
    ),
    (
        "bsc_write_errors_total",
        "counter",
        "Failed file opens and writes.",
        |h| h.stats().write_errors as f64,
    ),
    (
        "bsc_records_lost_total",
        "counter",
        "Units received but not written because of write errors.",
        |h| h.stats().records_lost as f64,
    ),
    (
        "bsc_hooks_not_run_total",
        "counter",
        "Closed files whose on_close hook never ran: the disk budget deleted them first, the hook queue was full, the file was gone or refused, or the command could not start.",
        |h| h.stats().hooks_not_run as f64,
    ),
    (
        "bsc_files_opened_total",
        "counter",
        "PCAP files opened.",
        |h| h.stats().files_opened as f64,
    ),
    (
        "bsc_truncated_total",
        "counter",
        "Units longer than the snaplen, written cut.",
        |h| h.stats().truncated as f64,
    ),
    (
        "bsc_files_deleted_total",
        "counter",
        "Files deleted by retention or the disk budget.",
        |h| h.stats().files_deleted as f64,
    ),
    (
        "bsc_framing_errors_total",
        "counter",
        "Losses of synchronization while framing units.",
        |h| h.units().map_or(0, |u| u.framing().framing_errors) as f64,
    ),
    (
        "bsc_bytes_discarded_total",
        "counter",
        "Bytes in no unit: garbage, bad units, partial units at a disconnect.",
        |h| h.units().map_or(0, |u| u.framing().bytes_discarded) as f64,
    ),
    (
        "bsc_crc_errors_total",
        "counter",
        "TM frames whose FECF failed.",
        |h| h.units().map_or(0, UnitPath::crc_errors) as f64,
    ),
    (
        "bsc_filtered_total",
        "counter",
        "Units pre_write_transforms filtered out.",
        |h| h.units().map_or(0, UnitPath::filtered) as f64,
    ),
    (
        "bsc_current_file_bytes",
        "gauge",
        "Size of the file being written (0 when none is open).",
        |h| h.current_file_bytes() as f64,
    ),
    (
        "bsc_last_packet_timestamp_seconds",
        "gauge",
        "Unix time of the last unit received (0 if none).",
        |h| h.stats().last_packet_at.map_or(0.0, |t| t.0 as f64 / 1e6),
    ),
];

/// Per stream, and for TM frames per spacecraft's master channel (as /stats
/// shows them): (name, help, master channels or streams, value).
type StreamMetric = (&'static str, &'static str, bool, fn(&StreamReport) -> u64);

const SEQUENCE: [StreamMetric; 7] = [
    (
        "bsc_sequence_gaps_total",
        "Gaps in a stream's sequence count (per APID or virtual channel).",
        false,
        |s| s.gaps,
    ),
    (
        "bsc_units_missing_total",
        "Units a stream's sequence count shows missing.",
        false,
        |s| s.missing,
    ),
    (
        "bsc_master_channel_frames_total",
        "TM frames counted on a spacecraft's master channel (idle frames too).",
        true,
        |s| s.units,
    ),
    (
        "bsc_master_channel_gaps_total",
        "Gaps in a spacecraft's master channel frame count.",
        true,
        |s| s.gaps,
    ),
    (
        "bsc_master_channel_frames_missing_total",
        "TM frames a spacecraft's master channel count shows missing.",
        true,
        |s| s.missing,
    ),
    (
        "bsc_master_channel_duplicates_total",
        "TM frames whose master channel count repeated the previous one.",
        true,
        |s| s.duplicates,
    ),
    (
        "bsc_master_channel_resets_total",
        "Jumps back in a spacecraft's master channel count (a restarted sender).",
        true,
        |s| s.resets,
    ),
];

/// The labels of a handler's series: its name, its address as AIT writes it
/// (`address`) and split (`host`, `port`), and its conn_type.
fn handler_labels(h: &Handler) -> String {
    let spec = h.spec();
    format!(
        "handler=\"{}\",conn_type=\"{}\",host=\"{}\",port=\"{}\",address=\"{}\"",
        label(&spec.name),
        spec.conn_type,
        label(&spec.address.host),
        spec.address.port,
        label(&spec.address.python_repr())
    )
}

/// The labels of a capturer's series.
fn capturer_labels(cap: &Capturer) -> String {
    format!(
        "conn_type=\"{}\",host=\"{}\",port=\"{}\",address=\"{}\"",
        cap.conn_type,
        label(&cap.address.host),
        cap.address.port,
        label(&cap.address.python_repr())
    )
}

/// A Prometheus label value, escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The `bsc_ship_*` series: one per key that ships, labelled as its handler's
/// (a handler gone whose files still wait: its name and address only).
fn ship_metrics(out: &mut String, cx: &Context) {
    let ships = ship_series(cx);
    if ships.is_empty() {
        return;
    }
    for (name, kind, help, value) in SHIP {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, st) in &ships {
            let _ = writeln!(out, "{name}{{{labels}}} {}", value(st));
        }
    }
}

/// Each key that ships: its labels and its status.
fn ship_series(cx: &Context) -> Vec<(String, ShipStatus)> {
    let statuses = cx.manager.ship_statuses(cx.now);
    if statuses.is_empty() {
        return Vec::new();
    }
    let by_key: std::collections::HashMap<String, &Handler> = cx
        .manager
        .handlers()
        .map(|(_, h)| (h.journal_key(), h))
        .collect();
    statuses
        .into_iter()
        .map(|(key, st)| {
            let labels = by_key.get(&key).map_or_else(
                || {
                    let address = key.split_once('@').map_or("", |(_, a)| a);
                    format!(
                        "handler=\"{}\",address=\"{}\"",
                        label(name_of_key(&key)),
                        label(address)
                    )
                },
                |h| handler_labels(h),
            );
            (labels, st)
        })
        .collect()
}

/// A `bsc_ship_*` family: (name, type, help, value).
type ShipMetric = (
    &'static str,
    &'static str,
    &'static str,
    fn(&ShipStatus) -> f64,
);

const SHIP: [ShipMetric; 7] = [
    (
        "bsc_ship_pending_files",
        "gauge",
        "Closed files waiting to ship.",
        |s| s.pending_files as f64,
    ),
    (
        "bsc_ship_pending_bytes",
        "gauge",
        "Bytes of the closed files waiting to ship.",
        |s| s.pending_bytes as f64,
    ),
    (
        "bsc_ship_oldest_pending_age_seconds",
        "gauge",
        "Seconds since the oldest file waiting to ship was closed (0 when none waits).",
        |s| s.oldest_pending_age_s.unwrap_or(0) as f64,
    ),
    (
        "bsc_shipped_files_total",
        "counter",
        "Files shipped (their ship command exited 0) since bsc started.",
        |s| s.shipped as f64,
    ),
    (
        "bsc_ship_failures_total",
        "counter",
        "Failed ship attempts (exit not 0, signal, timeout, cannot start) since bsc started.",
        |s| s.failures as f64,
    ),
    (
        "bsc_ship_dropped_total",
        "counter",
        "Files that were waiting to ship and are gone: deleted by the disk budget or behind bsc's back.",
        |s| s.dropped as f64,
    ),
    (
        "bsc_ship_refused_total",
        "counter",
        "Files not shipped because they were no longer the file bsc closed (a link, another file, written to since).",
        |s| s.refused as f64,
    ),
];

/// The build and process families.
fn process_metrics(out: &mut String, cx: &Context) {
    let _ = writeln!(
        out,
        "# HELP bsc_build_info The running bsc's version.\n# TYPE bsc_build_info gauge\nbsc_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    for (name, kind, help, value) in PROCESS {
        if let Some(value) = value(cx) {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
    }
}

/// A process family: (name, type, help, value; `None`: not written, when
/// the value cannot be known or does not apply).
type ProcessMetric = (
    &'static str,
    &'static str,
    &'static str,
    fn(&Context) -> Option<f64>,
);

const PROCESS: [ProcessMetric; 13] = [
    ("bsc_handlers", "gauge", "Handlers running.", |cx| {
        Some(cx.manager.handlers().count() as f64)
    }),
    ("bsc_capturers", "gauge", "Capture sockets open.", |cx| {
        Some(cx.manager.capturers().len() as f64)
    }),
    (
        "bsc_http_connections",
        "gauge",
        "Management API connections open.",
        |cx| Some(cx.http_connections as f64),
    ),
    (
        "bsc_disk_full",
        "gauge",
        "Whether the disk budget stopped writing (1): nothing left to delete.",
        |cx| Some(f64::from(u8::from(cx.manager.disk_full()))),
    ),
    (
        "bsc_clock_synchronized",
        "gauge",
        "Whether the system clock is synchronized (1) and after 2020.",
        |cx| Some(f64::from(u8::from(clock_ok(cx)))),
    ),
    (
        "bsc_clock_max_error_seconds",
        "gauge",
        "The kernel's maximum error of the system clock (adjtimex maxerror), read once a second; absent when unknown.",
        |cx| cx.manager.clock().max_error_seconds(),
    ),
    (
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since the Unix epoch in seconds.",
        |cx| Some(cx.started_at.0 as f64 / 1e6),
    ),
    (
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
        |_| Some(sys::resident_memory_bytes() as f64),
    ),
    (
        "process_cpu_seconds_total",
        "counter",
        "Total user and system CPU time spent in seconds.",
        |_| Some(sys::cpu_time().as_secs_f64()),
    ),
    (
        "bsc_disk_free_bytes",
        "gauge",
        "Free bytes on the root's file system.",
        |cx| cx.manager.disk().map(|(free, _, _)| free as f64),
    ),
    (
        "bsc_disk_budget_bytes",
        "gauge",
        "Free bytes the disk budget keeps on the root's file system.",
        |cx| {
            cx.manager
                .disk()
                .and_then(|(_, _, keep)| keep)
                .map(|k| k as f64)
        },
    ),
    ("bsc_open_fds", "gauge", "File descriptors open.", |_| {
        sys::open_fds().ok().map(|n| n as f64)
    }),
    ("bsc_max_fds", "gauge", "The open-file limit.", |_| {
        sys::open_file_limit().ok().map(|n| n as f64)
    }),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn every_family_is_written_once_the_process_last() {
        let all = families();
        assert_eq!(all.len(), 14 + 6 + 7 + 3 + 1);
        assert!(matches!(all[0], Family::Handler(("bsc_packets_total", ..))));
        assert!(matches!(all[14], Family::Up));
        assert!(matches!(all[15], Family::Ship));
        assert!(matches!(all[all.len() - 1], Family::Process));
    }
}
