//! `GET /health`: `ok` or `degraded` with one line per reason, the counts,
//! the disk space and whether the clock can be trusted ([`Health`]). The
//! reasons are the ones an operator acts on: handlers that cannot write, the
//! disk budget exhausted, TCP peers unreachable for longer than
//! `peer_unreachable_s`, files waiting to ship for longer than
//! `ship_max_pending_age_s`.

use std::time::Instant;

use super::answers::{Disk, Health};
use super::Context;
use crate::clock::UnixMicros;
use crate::control::http::response::Response;
use crate::manager::Manager;
use crate::ops::hooks::name_of_key;

/// `GET /health`.
pub(super) fn health(cx: &Context) -> Response {
    let degraded_handlers = cx
        .manager
        .handlers()
        .filter(|(_, h)| h.degraded().is_some() || h.suspended())
        .map(|(_, h)| h.spec().name.as_str().into())
        .collect();
    let reasons = degraded_reasons(cx.manager, cx.now, cx.mono);
    Response::json(
        200,
        &Health {
            capturers: cx.manager.capturers().len(),
            clock_synchronized: clock_ok(cx),
            degraded_handlers,
            disk: disk(cx.manager),
            disk_full: cx.manager.disk_full(),
            handlers: cx.manager.handlers().count(),
            http_connections: cx.http_connections,
            status: if reasons.is_empty() { "ok" } else { "degraded" }.into(),
            reasons,
            uptime_s: (cx.now.0 - cx.started_at.0).max(0) / 1_000_000,
            version: env!("CARGO_PKG_VERSION").into(),
        },
    )
}

/// The root's file system: free and total bytes, the bytes the disk budget
/// keeps free (`None` without a budget), and whether the budget has stopped
/// writing. `None` when the root cannot be looked at.
fn disk(manager: &Manager) -> Option<Disk> {
    let (free, total, budget) = manager.disk()?;
    Some(Disk {
        budget_bytes: budget,
        free_bytes: free,
        full: manager.disk_full(),
        total_bytes: total,
    })
}

/// Whether the wall clock can be trusted: after 2020 and synchronised (NTP),
/// as the kernel said at the loop's last reading (once a second).
pub(super) fn clock_ok(cx: &Context) -> bool {
    cx.now.secs() >= 1_577_836_800 && cx.manager.clock().synchronized == Some(true)
}

/// Why bsc is degraded now, one line each: handlers that cannot write, the disk
/// budget exhausted, TCP peers and forward targets unreachable for longer than `peer_unreachable_s`,
/// a UDP forward target with no socket (its host not found),
/// a file waiting to ship for longer than `ship_max_pending_age_s`.
fn degraded_reasons(manager: &Manager, now: UnixMicros, mono: Instant) -> Vec<String> {
    let mut reasons: Vec<String> = manager
        .handlers()
        .filter_map(|(_, h)| {
            let why = h.degraded().map(str::to_string).or_else(|| {
                h.suspended()
                    .then(|| "disk budget: no space to write".to_string())
            })?;
            Some(format!("handler {}: {why}", h.spec().name))
        })
        .collect();
    let limit = manager.ship_max_pending_age().as_secs();
    for (key, ship) in manager.ship_statuses(now) {
        let Some(age) = ship.oldest_pending_age_s.filter(|&a| a > limit) else {
            continue;
        };
        let why = ship
            .last_error
            .map_or_else(String::new, |e| format!("; last error: {e}"));
        reasons.push(format!(
            "ship: handler {}: the oldest file waiting to ship was closed {age} s ago, over ship_max_pending_age_s ({limit}); {} ({}) {}{why}",
            name_of_key(&key),
            crate::log::count(ship.pending_files, "file"),
            crate::log::size(ship.pending_bytes),
            if ship.pending_files == 1 { "waits" } else { "wait" }
        ));
    }
    if manager.disk_full() {
        reasons.push(
            "disk budget: below the free space to keep, and no closed bsc file left to delete"
                .into(),
        );
    }
    let limit = manager.peer_unreachable();
    for (_, cap) in manager.capturers() {
        if let Some(down) = cap.down_for(mono).filter(|d| *d >= limit) {
            let why = cap
                .tcp_status()
                .and_then(|t| t.last_error)
                .map_or_else(String::new, |e| format!(" ({e})"));
            reasons.push(format!(
                "tcp {}: peer unreachable for {} s{why}",
                cap.address,
                down.as_secs()
            ));
        }
    }
    for (_, h) in manager.handlers() {
        for t in h.relay().map_or(&[][..], |r| r.targets()) {
            // A UDP target with no socket (its host name not found): every
            // unit for it is dropped, from the start, until a reload.
            if t.state() == "error" && !t.is_connected() {
                let why = t
                    .last_error()
                    .map_or_else(String::new, |e| format!(" ({e})"));
                reasons.push(format!(
                    "forward {} (handler {}): cannot send{why}",
                    t.spec().url(),
                    h.spec().name
                ));
            }
            if let Some(down) = t.down_for(mono).filter(|d| *d >= limit) {
                let why = t
                    .last_error()
                    .map_or_else(String::new, |e| format!(" ({e})"));
                reasons.push(format!(
                    "forward {} (handler {}): unreachable for {} s{why}",
                    t.spec().url(),
                    h.spec().name,
                    down.as_secs()
                ));
            }
        }
    }
    reasons
}
