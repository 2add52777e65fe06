//! The entries the JSON documents about every handler and socket are made of
//! ([`super::walk`] writes them in pieces): a handler's `/stats` entry, a
//! socket's `/capturers` entry, a handler's `/series` entry, read from the
//! manager's state at `now` into their [`answers`](super::answers) types.

use super::answers::{CapturerEntry, ForwardStatus, SeriesEntry, StatsEntry};
use std::time::Instant;

use crate::clock::UnixMicros;
use crate::config::ConnType;
use crate::manager::handler::Handler;
use crate::manager::unit_path::UnitPath;
use crate::manager::{Capturer, CapturerState, Manager};
use crate::ops::hooks::ShipStatus;

/// A handler's entry of `GET /stats` (`cap`: its socket).
pub(super) fn stats_entry<'a>(
    cap: &'a Capturer,
    h: &'a Handler,
    now: UnixMicros,
    clock_synchronized: bool,
    ship: Option<ShipStatus>,
) -> StatsEntry<'a> {
    let s = &h.stats();
    let units = h.units();
    let degraded_reason = h.degraded().map(str::to_string).or_else(|| {
        h.suspended()
            .then(|| "disk budget: no space to write".to_string())
    });
    let mut entry = StatsEntry {
        name: h.spec().name.as_str().into(),
        reads: s.reads,
        data_read_length: format!("{} bytes", s.bytes_read),
        approx_data_rate: format!("{} bytes/second", python_float(s.lifetime_rate(now))),
        packets: s.packets,
        bytes: s.bytes,
        rate_bytes_per_s: s.recent_rate(now),
        files_opened: s.files_opened,
        current_file: h.current_file().map(|p| p.display().to_string()),
        current_file_bytes: h.current_file_bytes(),
        last_packet_at: s.last_packet_at.map(UnixMicros::to_rfc3339),
        write_errors: s.write_errors,
        records_lost: s.records_lost,
        truncated: s.truncated,
        rotations_calendar: s.rotations_calendar,
        rotations_size: s.rotations_size,
        rotations_count: s.rotations_count,
        rotations_forced: s.rotations_forced,
        files_deleted: s.files_deleted,
        files_vanished: s.files_vanished,
        hooks_not_run: s.hooks_not_run,
        state: if degraded_reason.is_some() {
            "degraded"
        } else {
            "ok"
        }
        .into(),
        degraded_reason,
        origin: h.origin().into(),
        clock_synchronized,
        local_address: match cap.conn_type {
            ConnType::Ethernet => Some(cap.local.clone()),
            _ => cap.local_addr().map(|a| a.to_string()),
        },
        rcvbuf_granted: cap.rcvbuf_granted,
        kernel_drops: cap.kernel_drops(),
        framing_errors: units.map_or(0, |u| u.framing().framing_errors),
        bytes_discarded: units.map_or(0, |u| u.framing().bytes_discarded),
        crc_errors: units.map_or(0, UnitPath::crc_errors),
        filtered: units.map_or(0, UnitPath::filtered),
        sequence: units.and_then(UnitPath::sequence),
        ship,
        forward: h.relay().map(|r| {
            r.targets()
                .iter()
                .map(|t| {
                    let (queued_units, queued_bytes) = t.queued();
                    let c = t.counters();
                    ForwardStatus {
                        target: t.spec().url(),
                        state: t.state().into(),
                        units_sent: c.units_sent,
                        bytes_sent: c.bytes_sent,
                        units_dropped: c.units_dropped,
                        queued_units,
                        queued_bytes,
                        last_error: t.last_error().map(str::to_string),
                    }
                })
                .collect()
        }),
        ..StatsEntry::default()
    };
    entry.set_tcp(cap.tcp_status());
    entry
}

/// A socket's entry of `GET /capturers`.
pub(super) fn capturer_entry<'a>(
    manager: &'a Manager,
    cap: &'a Capturer,
    now: UnixMicros,
    mono: Instant,
) -> CapturerEntry<'a> {
    let (state, next_attempt_at, error) = match cap.state(mono, now) {
        CapturerState::Listening => ("listening", None, None),
        CapturerState::Connecting => ("connecting", None, None),
        CapturerState::Connected => ("connected", None, None),
        CapturerState::Backoff {
            next_attempt_at,
            reason,
        } => ("backoff", Some(next_attempt_at.to_rfc3339()), reason),
        CapturerState::Error(e) => ("error", None, Some(e)),
    };
    CapturerEntry {
        address: (cap.address.host.as_str().into(), cap.address.port),
        key: cap.address.python_repr(),
        conn_type: cap.conn_type.as_str().into(),
        local_address: cap.local_addr().map(|a| a.to_string()),
        ifindex: cap.ifindex(),
        state: state.into(),
        next_attempt_at,
        error,
        rcvbuf_granted: cap.rcvbuf_granted,
        kernel_drops: cap.kernel_drops(),
        handlers: cap
            .handlers()
            .iter()
            .map(|&h| manager.handler(h).spec().name.as_str().into())
            .collect(),
    }
}

/// A handler's entry of `GET /series`: its last 600 seconds.
pub(super) fn series_entry(h: &Handler, now: UnixMicros) -> SeriesEntry<'_> {
    let (packets, bytes) = h.stats().series(now).unzip();
    let spec = h.spec();
    SeriesEntry {
        name: spec.name.as_str().into(),
        address: (spec.address.host.as_str().into(), spec.address.port),
        packets,
        bytes,
    }
}

/// Python's `repr(float)`: shortest round-trip digits, `.0` on whole numbers,
/// exponent form below 1e-4 and from 1e16 on.
pub fn python_float(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let a = x.abs();
    if a != 0.0 && !(1e-4..1e16).contains(&a) {
        let s = format!("{x:e}");
        let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
        let exp: i32 = exp.parse().unwrap_or(0);
        let mantissa = mantissa.strip_suffix(".0").unwrap_or(mantissa);
        return format!(
            "{mantissa}e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.abs()
        );
    }
    let s = format!("{x}");
    if s.contains('.') {
        s
    } else {
        s + ".0"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_float_repr() {
        for (x, want) in [
            (0.0, "0.0"),
            (1.0, "1.0"),
            (0.9, "0.9"),
            (18.0 / 32.4, "0.5555555555555556"),
            (1234.5, "1234.5"),
            (5e-5, "5e-05"),
            (1.5e-7, "1.5e-07"),
            (1e16, "1e+16"),
            (2.5e20, "2.5e+20"),
            (0.0001, "0.0001"),
        ] {
            assert_eq!(python_float(x), want, "{x}");
        }
    }
}
