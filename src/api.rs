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
//! | `api/metrics.rs` | `GET /metrics` in pieces, family by family |
//! | `api/health.rs` | `GET /health` and the reasons bsc is degraded |
//! | `api/page.rs` | `GET /ui`, the status page |
//! | `api.rs` | [`Context`], [`produce`], a handler's config entry |
//!
//! A config entry's `handler` dict has AIT's keys and, beside them, every other
//! key in effect with its applied value (an unset limit is `null`): what a client
//! reads back is what bsc does, not only what it was sent.
//!
//! Before any route, a request a web page sent is refused ([`crate::http::origin`]): a
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

use mio::Registry;
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::Value;

use crate::clock::UnixMicros;
use crate::config::{ConnType, HandlerSpec};
use crate::http::body::Cursor;
use crate::manager::handler::Handler;
use crate::manager::Manager;

pub mod answers;
mod auth;
mod control;
mod files;
mod health;
mod metrics;
mod page;
mod routes;
mod views;
mod walk;

pub use routes::respond;
pub use views::python_float;

/// What a request may see and change.
pub struct Context<'a> {
    pub manager: &'a mut Manager,
    pub registry: &'a Registry,
    pub now: UnixMicros,
    pub started_at: UnixMicros,
    /// `manager_server.token`: every request needs `Authorization: Bearer` it.
    pub token: Option<&'a str>,
    /// `manager_server.allowed_hosts`: names a `Host` header may give besides IP
    /// literals and `localhost` ([`crate::http::origin::check`]), lower-case.
    pub allowed_hosts: &'a [String],
    pub http_connections: usize,
}

/// Appends the next piece of an answer in pieces (`GET /`, `/stats`,
/// `/series`, `/capturers`, `/metrics`, `/<name>/files`) to `out`, from the manager as it is now. Returns
/// whether more follows.
pub fn produce(cursor: &mut Cursor, cx: &Context, out: &mut Vec<u8>) -> bool {
    if let Some(walk) = cursor.get_mut::<walk::Walk>() {
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

/// A JSON object whose keys keep the order they were added in.
struct Ordered<T>(Vec<(String, T)>);

impl<T: Serialize> Serialize for Ordered<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// AIT's handler dict (`log_dir`, `_validated_log_dir_root`, `name`,
/// `rotate_log`, `pre_write_transforms`, the keys given), plus every other key in
/// effect with its applied value (defaults included; an unset limit is `null`),
/// then the metadata.
#[derive(Serialize)]
struct HandlerDict<'a> {
    name: &'a str,
    log_dir: String,
    #[serde(rename = "_validated_log_dir_root")]
    validated_log_dir_root: String,
    rotate_log: bool,
    rotate_log_index: String,
    rotate_log_delta: u32,
    file_name_pattern: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<&'a str>,
    pre_write_transforms: Vec<String>,
    /// `"none"` or the framing object, defaults written out.
    framing: Value,
    /// `null` when units are not sequence-checked.
    sequence_check: Option<Value>,
    fecf: bool,
    drop_bad_frames: bool,
    rcvbuf_bytes: usize,
    rotate_max_bytes: Option<u64>,
    rotate_max_packets: Option<u64>,
    /// Seconds; 0 when records are forced to the disk only as a file closes.
    fsync_interval_s: f64,
    max_files: Option<u64>,
    max_bytes: Option<u64>,
    /// Seconds.
    max_age: Option<f64>,
    on_close: &'a [String],
    /// `"us"` or `"ns"`.
    timestamp_precision: &'static str,
    #[serde(flatten)]
    source: SourceOptions<'a>,
    #[serde(flatten)]
    metadata: Ordered<&'a Value>,
}

/// The options of a handler's kind of source, as applied.
#[derive(Serialize)]
#[serde(untagged)]
enum SourceOptions<'a> {
    Udp {
        record_source: bool,
        timestamps: &'static str,
        interface: Option<&'a str>,
    },
    Tcp {
        connect_timeout_s: f64,
        reconnect_max_s: f64,
    },
    Ethernet {
        direction: &'static str,
        timestamps: &'static str,
    },
}

/// One entry of `GET /` and `GET /<name>/config`.
#[derive(Serialize)]
struct ConfigEntry<'a> {
    handler: HandlerDict<'a>,
    log_file_path: String,
    conn_type: &'static str,
    address: (&'a str, u16),
}

fn config_entry(h: &Handler, now: UnixMicros) -> ConfigEntry<'_> {
    let spec = h.spec();
    let file = h.log_file_path(now);
    ConfigEntry {
        handler: HandlerDict {
            name: &spec.name,
            log_dir: file
                .parent()
                .map(|d| d.display().to_string())
                .unwrap_or_default(),
            validated_log_dir_root: h.root().display().to_string(),
            rotate_log: spec.rotation.is_some(),
            rotate_log_index: spec.rotate_log_index.to_string(),
            rotate_log_delta: spec.rotate_log_delta,
            file_name_pattern: spec.file_name_pattern.source(),
            path: spec.path.as_ref().map(|p| p.source()),
            pre_write_transforms: spec
                .pre_write_transforms
                .iter()
                .map(|t| t.to_string())
                .collect(),
            framing: spec.framing.to_json(),
            sequence_check: spec.sequence_check.map(|c| c.to_json()),
            fecf: spec.fecf,
            drop_bad_frames: spec.drop_bad_frames,
            rcvbuf_bytes: spec.rcvbuf_bytes,
            rotate_max_bytes: spec.rotate_max_bytes,
            rotate_max_packets: spec.rotate_max_packets,
            fsync_interval_s: spec.fsync_interval.map_or(0.0, |d| d.as_secs_f64()),
            max_files: spec.max_files,
            max_bytes: spec.max_bytes,
            max_age: spec.max_age.map(|d| d.as_secs_f64()),
            on_close: &spec.on_close,
            timestamp_precision: spec.timestamp_precision.as_str(),
            source: source_options(spec),
            metadata: Ordered(spec.metadata.iter().map(|(k, v)| (k.clone(), v)).collect()),
        },
        log_file_path: h.log_file_path(now).display().to_string(),
        conn_type: spec.conn_type.as_str(),
        address: (&spec.address.host, spec.address.port),
    }
}

fn source_options(spec: &HandlerSpec) -> SourceOptions<'_> {
    let timestamps = spec.timestamps.as_str();
    match spec.conn_type {
        ConnType::Udp => SourceOptions::Udp {
            record_source: spec.record_source,
            timestamps,
            interface: spec.interface.as_deref(),
        },
        ConnType::Tcp => SourceOptions::Tcp {
            connect_timeout_s: spec.connect_timeout.as_secs_f64(),
            reconnect_max_s: spec.reconnect_max.as_secs_f64(),
        },
        ConnType::Ethernet => SourceOptions::Ethernet {
            direction: spec.direction.as_str(),
            timestamps,
        },
    }
}
