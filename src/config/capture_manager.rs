//! The `capture_manager` section: the root, the management server
//! (`manager_server`), the disk budget, persistence, hooks and shipping. Sections have no
//! metadata: an unknown key is an error.

use std::path::PathBuf;

use serde_json::Value;

use super::address::validate_host;
use super::fields::{describe, field_err, FieldError, Fields};

/// Default management listener.
pub const DEFAULT_SERVER_HOST: &str = "127.0.0.1";
pub const DEFAULT_SERVER_PORT: u16 = 8080;

/// The `manager_server` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    pub host: String,
    pub port: u16,
    /// When set, every request needs `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// Serve a non-loopback address without a token (for trusted networks only).
    pub allow_unauthenticated: bool,
    /// Host names a request's `Host` header may give besides IP literals and
    /// `localhost` (`allowed_hosts`), lower-case; any other is refused (DNS
    /// rebinding).
    pub allowed_hosts: Vec<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            host: DEFAULT_SERVER_HOST.to_string(),
            port: DEFAULT_SERVER_PORT,
            token: None,
            allow_unauthenticated: false,
            allowed_hosts: Vec::new(),
        }
    }
}

/// Disk budget, persistence and hooks (`capture_manager` keys).
#[derive(Clone, Debug, PartialEq)]
pub struct StorageConfig {
    /// Keep at least this many bytes free on the root's file system.
    pub min_free_bytes: Option<u64>,
    /// Keep at least this share (0-100) of the root's file system free.
    pub min_free_percent: Option<f64>,
    /// Save handlers added over the API and restore them at start-up.
    pub persist: bool,
    /// Most `on_close` commands running at once (the rest wait their turn).
    pub on_close_max_running: usize,
    /// How long a TCP peer may stay unreachable before `/health` says degraded
    /// (`peer_unreachable_s`).
    pub peer_unreachable: std::time::Duration,
    /// Most `ship` commands running at once, across handlers (`ship_max_running`).
    pub ship_max_running: usize,
    /// How old the oldest file waiting to ship may get before `/health` says
    /// degraded (`ship_max_pending_age_s`).
    pub ship_max_pending_age: std::time::Duration,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            min_free_bytes: None,
            min_free_percent: None,
            persist: true,
            on_close_max_running: 2,
            peer_unreachable: std::time::Duration::from_secs(60),
            ship_max_running: 1,
            ship_max_pending_age: std::time::Duration::from_secs(3600),
        }
    }
}

/// Keys of `capture_manager`.
const KEYS: [&str; 9] = [
    "root_log_directory",
    "manager_server",
    "min_free_bytes",
    "min_free_percent",
    "persist",
    "on_close_max_running",
    "peer_unreachable_s",
    "ship_max_running",
    "ship_max_pending_age_s",
];
/// Keys of `capture_manager.manager_server`.
const SERVER_KEYS: [&str; 5] = [
    "host",
    "port",
    "token",
    "allow_unauthenticated",
    "allowed_hosts",
];

/// What a `capture_manager` section sets; what it leaves out has its default.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CaptureManager {
    /// `root_log_directory` as written (relative to the working directory or absolute).
    pub root: Option<PathBuf>,
    pub server: ServerConfig,
    pub storage: StorageConfig,
}

impl CaptureManager {
    /// Reads the section; errors name the key (`capture_manager.persist`).
    pub fn from_json(value: &Value) -> Result<CaptureManager, FieldError> {
        let cm = value
            .as_object()
            .ok_or_else(|| field_err("capture_manager", "must be an object"))?;
        let f = Fields::section(cm, "capture_manager");
        f.only(&KEYS)?;
        let root = f.read("root_log_directory", |v| match v {
            Value::String(s) if !s.is_empty() => Ok(PathBuf::from(s)),
            other => Err(format!(
                "must be a non-empty string, got {}",
                describe(other)
            )),
        })?;
        let defaults = StorageConfig::default();
        let storage = StorageConfig {
            min_free_bytes: f.size("min_free_bytes")?,
            min_free_percent: f.number("min_free_percent", 0.0..100.0)?,
            persist: f.boolean("persist", defaults.persist)?,
            on_close_max_running: f
                .whole("on_close_max_running", 1..=64)?
                .map_or(defaults.on_close_max_running, |n| n as usize),
            peer_unreachable: f.seconds(
                "peer_unreachable_s",
                defaults.peer_unreachable.as_secs_f64(),
                1.0..=86_400.0,
            )?,
            ship_max_running: f
                .whole("ship_max_running", 1..=64)?
                .map_or(defaults.ship_max_running, |n| n as usize),
            ship_max_pending_age: f.seconds(
                "ship_max_pending_age_s",
                defaults.ship_max_pending_age.as_secs_f64(),
                1.0..=31_536_000.0,
            )?,
        };
        let server = match f.get("manager_server") {
            Some(ms) => server(ms)?,
            None => ServerConfig::default(),
        };
        Ok(CaptureManager {
            root,
            server,
            storage,
        })
    }
}

/// `capture_manager.manager_server`.
fn server(value: &Value) -> Result<ServerConfig, FieldError> {
    const SECTION: &str = "capture_manager.manager_server";
    let ms = value
        .as_object()
        .ok_or_else(|| field_err(SECTION, "must be an object"))?;
    let f = Fields::section(ms, SECTION);
    f.only(&SERVER_KEYS)?;
    let token = f.read("token", |v| match v {
        Value::String(t)
            if !t.is_empty() && t.len() <= 1024 && t.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            Ok(t.clone())
        }
        _ => Err("must be 1 to 1024 printable ASCII characters without spaces".to_string()),
    })?;
    let host = f.read("host", |v| match v {
        Value::String(h) if validate_host(h).is_ok() => Ok(h.clone()),
        other => Err(format!(
            "must be a host name or IP address, got {}",
            describe(other)
        )),
    })?;
    let defaults = ServerConfig::default();
    Ok(ServerConfig {
        host: match host {
            None => defaults.host,
            // "" is every interface, as AIT's empty host.
            Some(h) if h.is_empty() => "0.0.0.0".to_string(),
            Some(h) => h,
        },
        port: f.port("port", 1)?.unwrap_or(defaults.port),
        token,
        allow_unauthenticated: f.boolean("allow_unauthenticated", false)?,
        allowed_hosts: f.read("allowed_hosts", allowed_hosts)?.unwrap_or_default(),
    })
}

/// `manager_server.allowed_hosts`: a list of host names (what a browser sends in
/// `Host` without the port), lower-cased.
fn allowed_hosts(value: &Value) -> Result<Vec<String>, String> {
    let Value::Array(items) = value else {
        return Err(format!(
            "must be a list of host names, such as [\"bsc.example.org\"], got {}",
            describe(value)
        ));
    };
    items
        .iter()
        .map(|item| match item {
            Value::String(name) if is_host_name(name) => Ok(name.to_ascii_lowercase()),
            Value::String(name) => Err(format!(
                "{name:?} is not a host name: give the name alone (no port, scheme or \
                 path; letters, digits, -, _ and ., at most 253 characters)"
            )),
            other => Err(format!(
                "must list host names as strings, got {}",
                describe(other)
            )),
        })
        .collect()
}

/// A name a `Host` header can carry: ASCII letters, digits, `-`, `_` and `.`,
/// 1 to 253 characters (so no port, whitespace or control characters).
fn is_host_name(name: &str) -> bool {
    (1..=253).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}
