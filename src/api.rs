//! The management API: routes → manager calls → JSON in the shapes of AIT's
//! service (see `shared/reference/`).
//!
//! | route | does |
//! |---|---|
//! | `GET /` | config of every handler, grouped by address key (`['', 8500]`) |
//! | `GET /stats` | statistics of every handler, grouped by address key |
//! | `POST /<name>/start` | adds a handler (201 with its config entry) |
//! | `DELETE /<name>/stop` | stops every handler of that name (200 with their entries) |
//! | `GET /<name>/config` | entries of handlers of that name (`[]` if none, as AIT) |
//! | `POST /<name>/rotate` | closes and reopens their files now, metadata fields first |
//! | `GET /capturers` | every socket: address, state, local address, handlers |
//! | `DELETE /capturers` | closes the socket at an address and stops its handlers |
//! | `GET /series` | per handler, units and bytes of each of the last 600 seconds |
//! | `GET /health` | status, uptime, counts, disk space |
//! | `GET /ui` | the status page (HTML; the one route served without the token) |
//! | `GET /metrics` | Prometheus text exposition 0.0.4 |
//!
//! A config entry's `handler` dict has AIT's keys and, beside them, every other
//! key in effect with its applied value (an unset limit is `null`): what a client
//! reads back is what bsc does, not only what it was sent (`api/entry.rs`,
//! written from the key table, [`config::KEYS`]).
//!
//! Before any route, a request a web page sent is refused ([`origin`]): a
//! `Host` that is not an IP literal, `localhost` or a name in
//! `manager_server.allowed_hosts` gets 421 (DNS rebinding), an `Origin` other
//! than the server's own gets 403 (another site's form or script), on every
//! route but `GET /ui`'s Origin; then the token is checked (401).
//!
//! The answers about every handler (`GET /`, `/stats`, `/series`, `/capturers`, `/metrics`)
//! and a handler's files (`GET /<name>/files`) are produced in pieces as the
//! client reads them ([`crate::http::body`]): `walk` writes the JSON documents
//! capturer by capturer, `metrics` the Prometheus text family by family,
//! `files` the file list file by file, each piece from the manager as it is
//! then ([`produce`]).
//!
//! Every answer is JSON (metrics and the status page aside); every error is `{"error": "..."}` with a
//! 4xx status. Fields come from the query string and the body (urlencoded,
//! multipart or JSON; body wins) and are validated by the same code as the
//! config file ([`HandlerSpec::from_api_fields`]), with paths confined to the
//! root directory.

use std::time::Instant;

use mio::Registry;
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::clock::UnixMicros;
use crate::config::{self, ConnType, HandlerSpec};
use crate::hooks::{name_of_key, ShipStatus};
use crate::http::body::Cursor;
use crate::http::request::Request;
use crate::http::response::Response;
use crate::http::{form, origin};
use crate::log::{self, Level};
use crate::manager::handler::Handler;
use crate::manager::{
    AddError, Capturer, CapturerState, HandlerId, Manager, RotateError, TcpStatus,
};
use crate::sequence::SequenceReport;
use crate::sys;
use crate::telemetry::UnitPath;
use entry::config_entry;
use walk::{View, Walk};

#[cfg(debug_assertions)]
mod debug;
mod entry;
mod files;
mod metrics;
mod walk;

/// What a request may see and change.
pub struct Context<'a> {
    pub manager: &'a mut Manager,
    pub registry: &'a Registry,
    pub now: UnixMicros,
    /// The loop's instant for timers and back-offs (`now` is its calendar time).
    pub mono: Instant,
    pub started_at: UnixMicros,
    /// `manager_server.token`: every request needs `Authorization: Bearer` it.
    pub token: Option<&'a str>,
    /// `manager_server.allowed_hosts`: names a `Host` header may give besides IP
    /// literals and `localhost` ([`origin::check`]), lower-case.
    pub allowed_hosts: &'a [String],
    pub http_connections: usize,
}

/// The status page: one self-contained HTML file (inline CSS and JS) that reads
/// the JSON routes with the token the operator types in.
const STATUS_PAGE: &str = include_str!("ui.html");

/// Answers one request.
pub fn respond(req: &Request, cx: &mut Context) -> Response {
    // The status page holds no data (it fetches the JSON routes with the token),
    // so it is the one route served without the token or an own Origin: a GET
    // only. Every route checks the Host (DNS rebinding).
    let page = req.method == "GET" && req.segments() == ["ui"];
    if let Some(refusal) = origin::check(req, cx.allowed_hosts, page) {
        log::limited(
            "http-foreign",
            Level::Warn,
            format_args!(
                "management API: refused {} {} ({}): {}",
                req.method, req.path, refusal.status, refusal.message
            ),
        );
        return Response::error(refusal.status, refusal.message);
    }
    if page {
        return status_page();
    }
    if let Some(token) = cx.token {
        if !authorized(req, token) {
            return Response::error(401, "missing or wrong Authorization: Bearer token")
                .with_header("WWW-Authenticate", "Bearer");
        }
    }
    let segments = req.segments();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    match segments.as_slice() {
        [""] => only(req, "GET", || in_pieces(View::Configs)),
        ["stats"] => only(req, "GET", || in_pieces(View::Stats)),
        ["series"] => only(req, "GET", || in_pieces(View::Series)),
        ["health"] => only(req, "GET", || health(cx)),
        ["ui"] => only(req, "GET", status_page),
        ["metrics"] => only(req, "GET", || Response::in_pieces(metrics::CONTENT_TYPE, Cursor::new(metrics::Walk::default()))),
        ["capturers"] => match req.method.as_str() {
            "GET" => in_pieces(View::Capturers),
            "DELETE" => stop_capturer(req, cx),
            other => Response::error(405, format!("{other} is not allowed here; use GET or DELETE")).with_header("Allow", "GET, DELETE"),
        },
        [name, "start"] => only(req, "POST", || start(name, req, cx)),
        [name, "stop"] => only(req, "DELETE", || stop(name, cx)),
        [name, "config"] => only(req, "GET", || {
            let ids = cx.manager.handlers_named(name);
            Response::json(200, &ids.iter().map(|&h| config_entry(cx.manager.handler(h), cx.manager.storage(), cx.now)).collect::<Vec<_>>())
        }),
        [name, "rotate"] => only(req, "POST", || rotate(name, req, cx)),
        [name, "files"] => only(req, "GET", || {
            if cx.manager.handlers_named(name).is_empty() {
                return not_found(name, cx.manager);
            }
            Response::in_pieces("application/json", Cursor::new(files::Walk::new(name)))
        }),
        #[cfg(debug_assertions)]
        ["debug", "clock"] if crate::clock::driven() => only(req, "POST", || debug::clock(req)),
                _ => Response::error(
            404,
            format!("no route {} {}; see GET / , /stats, /series, /health, /metrics, /capturers, /ui, /<name>/start|stop|config|rotate|files", req.method, req.path),
        ),
    }
}

/// An answer about every handler or socket, its body produced in pieces ([`walk`]).
fn in_pieces(view: View) -> Response {
    Response::in_pieces("application/json", Cursor::new(Walk::new(view)))
}

/// Appends the next piece of an answer in pieces (`GET /`, `/stats`,
/// `/series`, `/capturers`, `/metrics`, `/<name>/files`) to `out`, from the manager as it is now. Returns
/// whether more follows.
pub fn produce(cursor: &mut Cursor, cx: &Context, out: &mut Vec<u8>) -> bool {
    if let Some(walk) = cursor.get_mut::<Walk>() {
        return walk::produce(walk, cx, out);
    }
    if let Some(walk) = cursor.get_mut::<metrics::Walk>() {
        return metrics::produce(walk, cx, out);
    }
    if let Some(walk) = cursor.get_mut::<files::Walk>() {
        return files::produce(walk, cx, out);
    }
    false
}

fn only(req: &Request, method: &'static str, answer: impl FnOnce() -> Response) -> Response {
    if req.method == method {
        answer()
    } else {
        Response::error(
            405,
            format!("{} is not allowed here; use {method}", req.method),
        )
        .with_header("Allow", method)
    }
}

fn authorized(req: &Request, token: &str) -> bool {
    let Some(value) = req.header("authorization") else {
        return false;
    };
    let Some((scheme, given)) = value.split_once(' ') else {
        return false;
    };
    scheme.eq_ignore_ascii_case("bearer")
        && constant_time_eq(given.trim().as_bytes(), token.as_bytes())
}

/// Compares without an early exit, so the time taken does not tell how much of a
/// guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        diff |= (a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0)) as usize;
    }
    diff == 0
}

/// One entry of `GET /stats`: AIT's four fields, then plain numbers.
#[derive(Serialize)]
struct StatsEntry<'a> {
    name: &'a str,
    /// AIT's words, AIT's meaning: reads (datagrams, TCP reads, frames), their
    /// bytes and the lifetime rate of those bytes.
    reads: u64,
    data_read_length: String,
    approx_data_rate: String,
    /// Units: the reads, or with framing the units cut from them.
    packets: u64,
    bytes: u64,
    rate_bytes_per_s: f64,
    files_opened: u64,
    current_file: Option<String>,
    current_file_bytes: u64,
    last_packet_at: Option<String>,
    write_errors: u64,
    records_lost: u64,
    truncated: u64,
    rotations_calendar: u64,
    rotations_size: u64,
    rotations_count: u64,
    rotations_forced: u64,
    files_deleted: u64,
    /// Open files deleted or moved behind bsc's back.
    files_vanished: u64,
    /// Closed files the disk budget deleted before their `on_close` hook ended.
    hooks_not_run: u64,
    /// `ok`, or `degraded` while writes fail or the disk budget stops writing.
    state: &'static str,
    /// `config`, `api` (added by a request of this run) or `restored` (added
    /// over the API before the last start and restored from the state file).
    origin: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    degraded_reason: Option<String>,
    clock_synchronized: bool,
    /// The socket's bound local address.
    /// udp: the bound address; tcp: the connection's, while connected (as
    /// `/capturers` shows it); ethernet: the interface.
    local_address: Option<String>,
    /// The receive buffer the kernel granted the socket.
    rcvbuf_granted: usize,
    /// Units the kernel dropped on this socket for lack of buffer space.
    kernel_drops: u32,
    /// tcp: `connected`, `reconnects`, `last_error`, `last_connected_at`.
    #[serde(flatten)]
    tcp: Option<TcpStatus>,
    /// Losses of synchronization while framing (0 without `framing`).
    framing_errors: u64,
    /// Bytes in no unit: garbage, bad units, partial units at a disconnect.
    bytes_discarded: u64,
    /// TM frames whose FECF failed (0 without `fecf`).
    crc_errors: u64,
    /// Units `pre_write_transforms` filtered out.
    filtered: u64,
    /// Only with `sequence_check`: totals, then per stream (at most 256; units of
    /// further streams count as `other`).
    #[serde(skip_serializing_if = "Option::is_none")]
    sequence: Option<SequenceReport>,
    /// Only for a handler with `ship` (or files of its key waiting): its backlog
    /// and how shipping goes.
    #[serde(skip_serializing_if = "Option::is_none")]
    ship: Option<ShipStatus>,
}

fn stats_entry<'a>(
    cap: &'a Capturer,
    h: &'a Handler,
    now: UnixMicros,
    clock_synchronized: bool,
    ship: Option<ShipStatus>,
) -> StatsEntry<'a> {
    let s = &h.stats();
    let units = h.units();
    StatsEntry {
        name: &h.spec().name,
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
        state: if h.degraded().is_some() || h.suspended() {
            "degraded"
        } else {
            "ok"
        },
        degraded_reason: h.degraded().map(str::to_string).or_else(|| {
            h.suspended()
                .then(|| "disk budget: no space to write".to_string())
        }),
        origin: h.origin(),
        clock_synchronized,
        local_address: match cap.conn_type {
            ConnType::Ethernet => Some(cap.local.clone()),
            _ => cap.local_addr().map(|a| a.to_string()),
        },
        rcvbuf_granted: cap.rcvbuf_granted,
        kernel_drops: cap.kernel_drops,
        tcp: cap.tcp_status(),
        framing_errors: units.map_or(0, |u| u.framing().framing_errors),
        bytes_discarded: units.map_or(0, |u| u.framing().bytes_discarded),
        crc_errors: units.map_or(0, UnitPath::crc_errors),
        filtered: units.map_or(0, UnitPath::filtered),
        sequence: units.and_then(UnitPath::sequence),
        ship,
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

/// The request's fields: query string, then the body's (which win).
fn fields(req: &Request) -> Result<Map<String, Value>, Response> {
    let mut out = form::urlencoded(&req.query)
        .map_err(|e| Response::error(e.status, format!("query string: {}", e.message)))?;
    let body = form::decode(req.header("content-type"), &req.body)
        .map_err(|e| Response::error(e.status, e.message))?;
    out.extend(body);
    Ok(out)
}

fn start(name: &str, req: &Request, cx: &mut Context) -> Response {
    if let Err(m) = config::validate_name(name) {
        return Response::error(400, format!("handler name: {m}"));
    }
    let fields = match fields(req) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let spec = match HandlerSpec::from_api_fields(name, fields) {
        Ok(s) => s,
        Err(e) => return Response::error(400, e.to_string()),
    };
    match cx.manager.add_handler(spec, cx.registry, cx.now, cx.mono) {
        Ok(hid) => {
            cx.manager.save_api_handlers();
            Response::json(
                201,
                &config_entry(cx.manager.handler(hid), cx.manager.storage(), cx.now),
            )
        }
        Err(e @ (AddError::Conflict(_) | AddError::Socket(_))) => {
            Response::error(409, e.to_string())
        }
        Err(AddError::Invalid(e)) => Response::error(400, e),
    }
}

fn not_found(name: &str, manager: &Manager) -> Response {
    let mut names: Vec<&str> = manager
        .handlers()
        .map(|(_, h)| h.spec().name.as_str())
        .collect();
    names.sort_unstable();
    names.dedup();
    Response::error(
        404,
        format!(
            "no handler named {name:?} (running: {})",
            if names.is_empty() {
                "none".into()
            } else {
                names.join(", ")
            }
        ),
    )
}

fn stop(name: &str, cx: &mut Context) -> Response {
    let ids = cx.manager.handlers_named(name);
    if ids.is_empty() {
        return not_found(name, cx.manager);
    }
    let entries = owned_entries(cx.manager, &ids, cx.now);
    for hid in ids {
        cx.manager.remove_handler(hid, cx.registry, cx.now);
    }
    cx.manager.save_api_handlers();
    Response::json(200, &entries)
}

/// Config entries of handlers about to be stopped, taken before they go (the
/// entries borrow the handlers).
fn owned_entries(manager: &Manager, ids: &[HandlerId], now: UnixMicros) -> Vec<Value> {
    ids.iter()
        .map(|&h| {
            serde_json::to_value(config_entry(manager.handler(h), manager.storage(), now))
                .unwrap_or(Value::Null)
        })
        .collect()
}

fn rotate(name: &str, req: &Request, cx: &mut Context) -> Response {
    if cx.manager.handlers_named(name).is_empty() {
        return not_found(name, cx.manager);
    }
    let fields = match fields(req) {
        Ok(f) => f,
        Err(r) => return r,
    };
    match cx.manager.rotate(name, &fields, cx.now) {
        Ok(rotated) => {
            let answer: Vec<Value> = rotated
                .into_iter()
                .map(|r| {
                    let h = cx.manager.handler(r.id);
                    json!({
                        "name": h.spec().name,
                        "address": [h.spec().address.host, h.spec().address.port],
                        "previous_file": r.previous.map(|p| p.display().to_string()),
                        "log_file_path": r.path.display().to_string(),
                    })
                })
                .collect();
            Response::json(200, &answer)
        }
        Err(RotateError::NotFound) => not_found(name, cx.manager),
        Err(RotateError::Invalid(m)) => Response::error(400, m),
        Err(RotateError::Conflict(m)) => Response::error(409, m),
        Err(RotateError::Failed(m)) => Response::error(503, m),
    }
}

/// One entry of `GET /capturers`.
#[derive(Serialize)]
pub(crate) struct CapturerEntry<'a> {
    address: (&'a str, u16),
    key: String,
    conn_type: &'static str,
    /// udp: the bound address; tcp: the connection's local address while connected.
    #[serde(skip_serializing_if = "Option::is_none")]
    local_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ifindex: Option<u32>,
    state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_attempt_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    rcvbuf_granted: usize,
    kernel_drops: u32,
    handlers: Vec<&'a str>,
}

/// The entry of one socket in `GET /capturers`.
fn capturer_entry<'a>(
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
        address: (&cap.address.host, cap.address.port),
        key: cap.address.python_repr(),
        conn_type: cap.conn_type.as_str(),
        local_address: cap.local_addr().map(|a| a.to_string()),
        ifindex: cap.ifindex(),
        state,
        next_attempt_at,
        error,
        rcvbuf_granted: cap.rcvbuf_granted,
        kernel_drops: cap.kernel_drops,
        handlers: cap
            .handlers()
            .iter()
            .map(|&h| manager.handler(h).spec().name.as_str())
            .collect(),
    }
}

/// `DELETE /capturers` with `loc`, `port` (and optionally `conn_type`).
fn stop_capturer(req: &Request, cx: &mut Context) -> Response {
    let fields = match fields(req) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let text = |key: &str| match fields.get(key) {
        None => None,
        Some(Value::String(s)) => Some(s.trim().to_string()),
        Some(other) => Some(other.to_string()),
    };
    let Some(port) = text("port") else {
        return Response::error(400, "port: is required");
    };
    let Ok(port) = port.parse::<u16>() else {
        return Response::error(
            400,
            format!("port: must be a whole number 0..65535, got {port:?}"),
        );
    };
    let address = config::Address {
        host: text("loc").unwrap_or_default(),
        port,
    };
    let existing: Vec<String> = cx
        .manager
        .capturers()
        .iter()
        .map(|(_, c)| c.address.python_repr())
        .collect();
    let not_found = |why: String| {
        Response::error(
            404,
            format!(
                "{why} (capturers: {})",
                if existing.is_empty() {
                    "none".into()
                } else {
                    existing.join(", ")
                }
            ),
        )
    };
    let Some(cid) = cx.manager.capturer_at(&address) else {
        return not_found(format!("no capturer at {}", address.python_repr()));
    };
    let cap = cx.manager.capturer(cid);
    let conn_type = cap.conn_type;
    if let Some(want) = text("conn_type") {
        if want != conn_type.as_str() {
            return not_found(format!(
                "no {want} capturer at {} (it is {conn_type})",
                address.python_repr()
            ));
        }
    }
    let entries = owned_entries(cx.manager, cap.handlers(), cx.now);
    // The removed handlers' files are flushed and closed, and the socket is
    // closed, before the answer is sent.
    cx.manager.remove_capturer(&address, cx.registry, cx.now);
    cx.manager.save_api_handlers();
    Response::json(
        200,
        &json!({
            "address": [address.host, address.port],
            "key": address.python_repr(),
            "conn_type": conn_type.as_str(),
            "stopped": entries,
        }),
    )
}

/// `GET /ui`: the page, never cached (a new bsc may serve a new page), and told
/// by its Content-Security-Policy to load nothing and talk only to bsc.
fn status_page() -> Response {
    Response::text(200, "text/html; charset=utf-8", STATUS_PAGE.to_string())
        .with_header("Cache-Control", "no-store")
        .with_header(
            "Content-Security-Policy",
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:; form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
        )
}

/// One handler of `GET /series`.
#[derive(Serialize)]
pub(crate) struct SeriesEntry<'a> {
    name: &'a str,
    address: (&'a str, u16),
    /// Units per second, oldest first.
    packets: Vec<u32>,
    /// Bytes per second, oldest first.
    bytes: Vec<u32>,
}

/// The root's file system as `/health` shows it: free and total bytes, the bytes
/// the disk budget keeps free (`null` without a budget), and whether the budget
/// has stopped writing. `null` when the root cannot be looked at.
fn disk(manager: &Manager) -> Value {
    match manager.disk() {
        Some((free, total, budget)) => json!({
            "free_bytes": free,
            "total_bytes": total,
            "budget_bytes": budget,
            "full": manager.disk_full(),
        }),
        None => Value::Null,
    }
}

/// Whether the wall clock can be trusted: after 2020 and synchronised (NTP).
fn clock_ok(now: UnixMicros) -> bool {
    now.secs() >= 1_577_836_800 && sys::clock_synchronised()
}

/// Why bsc is degraded now, one line each: handlers that cannot write, the disk
/// budget exhausted, TCP peers unreachable for longer than `peer_unreachable_s`,
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
    reasons
}

fn health(cx: &Context) -> Response {
    let degraded: Vec<&str> = cx
        .manager
        .handlers()
        .filter(|(_, h)| h.degraded().is_some() || h.suspended())
        .map(|(_, h)| h.spec().name.as_str())
        .collect();
    let reasons = degraded_reasons(cx.manager, cx.now, cx.mono);
    Response::json(
        200,
        &json!({
            "status": if reasons.is_empty() { "ok" } else { "degraded" },
            "reasons": reasons,
            "degraded_handlers": degraded,
            "disk_full": cx.manager.disk_full(),
            "disk": disk(cx.manager),
            "clock_synchronized": clock_ok(cx.now),
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_s": (cx.now.0 - cx.started_at.0).max(0) / 1_000_000,
            "handlers": cx.manager.handlers().count(),
            "capturers": cx.manager.capturers().len(),
            "http_connections": cx.http_connections,
        }),
    )
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

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
