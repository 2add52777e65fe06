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
//! | `GET /<name>/data` | the records of a time window, one pcap read from its files (`api/extract.rs`) |
//!
//! One file per concept:
//!
//! | file | its job |
//! |---|---|
//! | `api/routes.rs` | [`respond`]: a request to its route, 404/405 |
//! | `api/auth.rs` | the `Host`/`Origin` refusals and the token |
//! | `api/control.rs` | the routes that change the manager: start, stop, rotate, `DELETE /capturers` |
//! | `api/answers.rs` | [`answers`]: every answer's type, shared with the client |
//! | `api/views.rs` | a handler's or socket's entry of `/stats`, `/capturers`, `/series` |
//! | `api/walk.rs` | `GET /`, `/stats`, `/series`, `/capturers` in pieces |
//! | `api/files.rs` | `GET /<name>/files` in pieces |
//! | `api/extract.rs` | `GET /<name>/data`, a time window's records read from the files in pieces |
//! | `api/metrics.rs` | `GET /metrics` in pieces, family by family |
//! | `api/health.rs` | `GET /health` and the reasons bsc is degraded |
//! | `api/page.rs` | `GET /ui`, the status page |
//! | `api.rs` | [`Context`], [`produce`], a handler's config entry |
//!
//! A config entry's `handler` dict has AIT's keys and, beside them, every other
//! key in effect with its applied value (an unset limit is `null`): what a client
//! reads back is what bsc does, not only what it was sent.
//!
//! Before any route, a request a web page sent is refused ([`crate::control::http::origin`]): a
//! `Host` that is not an IP literal, `localhost` or a name in
//! `manager_server.allowed_hosts` gets 421 (DNS rebinding), an `Origin` other
//! than the server's own gets 403 (another site's form or script), on every
//! route but `GET /ui`'s Origin; then the token is checked (401).
//!
//! The answers about every handler (`GET /`, `/stats`, `/series`, `/capturers`, `/metrics`)
//! and a handler's files (`GET /<name>/files`) are produced in pieces as the
//! client reads them ([`crate::control::http::body`]): `walk` writes the JSON documents
//! capturer by capturer, `metrics` the Prometheus text family by family,
//! `files` the file list file by file, each piece from the manager as it is
//! then ([`produce`]).
//!
//! Every answer is JSON (metrics and the status page aside); every error is `{"error": "..."}` with a
//! 4xx status. Fields come from the query string and the body (urlencoded,
//! multipart or JSON; body wins) and are validated by the same code as the
//! config file ([`crate::config::HandlerSpec::from_api_fields`]), with paths confined to the
//! root directory.

use std::time::Instant;

use mio::Registry;

use crate::clock::UnixMicros;
use crate::control::http::body::Cursor;
use crate::manager::Manager;

pub mod answers;
mod asked;
mod auth;
mod control;
#[cfg(debug_assertions)]
mod debug;
mod entry;
mod extract;
mod files;
mod forward_metrics;
mod health;
mod metrics;
mod page;
mod routes;
mod views;
mod walk;

use entry::config_entry;
pub use routes::respond;
pub use views::python_float;

/// What a request may see and change.
pub struct Context<'a> {
    pub manager: &'a mut Manager,
    pub registry: &'a Registry,
    pub now: UnixMicros,
    /// The loop's monotonic instant of this turn (deadlines, how long a peer
    /// has been down).
    pub mono: Instant,
    pub started_at: UnixMicros,
    /// `manager_server.token`: every request needs `Authorization: Bearer` it.
    pub token: Option<&'a str>,
    /// `manager_server.allowed_hosts`: names a `Host` header may give besides IP
    /// literals and `localhost` ([`crate::control::http::origin::check`]), lower-case.
    pub allowed_hosts: &'a [String],
    pub http_connections: usize,
}

/// Appends the next piece of an answer in pieces (`GET /`, `/stats`,
/// `/series`, `/capturers`, `/metrics`, `/<name>/files`) to `out`, from the manager as it is now. Returns
/// whether more follows.
pub fn produce(cursor: &mut Cursor, cx: &mut Context, out: &mut Vec<u8>) -> bool {
    if let Some(walk) = cursor.get_mut::<walk::Walk>() {
        return walk::produce(walk, cx, out);
    }
    if let Some(walk) = cursor.get_mut::<metrics::Walk>() {
        return metrics::produce(walk, cx, out);
    }
    if let Some(walk) = cursor.get_mut::<files::Walk>() {
        return files::produce(walk, cx, out);
    }
    if let Some(ex) = cursor.get_mut::<extract::Extract>() {
        let more = extract::produce(ex, out);
        for (path, index) in ex.rebuilt() {
            cx.manager.keep_index(&path, index);
        }
        return more;
    }
    false
}
