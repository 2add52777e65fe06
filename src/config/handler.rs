//! One handler's definition: [`HandlerSpec`], validated from AIT's keys by
//! [`HandlerSpec::from_json`], whichever way it comes ([`Origin`]).

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use super::address::{validate_host, Address};
use super::choices::{ConnType, Direction, Precision, Timestamps};
use super::fields::{describe, field_err, FieldError, Fields};
use super::framing;
use super::typos;
use crate::framing::Framing;
use crate::paths::{literal_base, CapturePath};
use crate::pattern::{Pattern, PatternError};
use crate::rotation::{RotationRule, RotationUnit};
use crate::sequence::{self, SequenceCheck};
use crate::transform::Transform;

/// AIT's default file name pattern.
pub const DEFAULT_FILE_NAME_PATTERN: &str = "%Y-%m-%d-%H-%M-%S-{name}.pcap";
/// Default requested socket receive buffer. The kernel doubles the request and
/// charges each datagram its buffer's true size (measured: 832 bytes for a 64-byte
/// datagram, 2,304 for a 1,024-byte one). A 100 ms disk stall at 200,000
/// datagrams/s is 20,000 datagrams: 16.6 MB at 64 bytes, 46 MB at 1 KiB; 24 MiB
/// doubled (48 MiB) holds either.
pub const DEFAULT_RCVBUF_BYTES: usize = 24 << 20;
/// Longest handler name.
pub const MAX_NAME_LEN: usize = 64;

/// Where a handler definition came from; decides what it may set.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The config file: trusted, may use absolute `path`s.
    ConfigFile,
    /// A REST request: `path` and `file_name_pattern` are confined to the root.
    Api,
}

/// One handler, fully validated.
#[derive(Clone, Debug, PartialEq)]
pub struct HandlerSpec {
    pub name: String,
    pub conn_type: ConnType,
    pub address: Address,
    /// `path` as given (a pattern), if any.
    pub path: Option<Pattern>,
    pub file_name_pattern: Pattern,
    /// `None` when `rotate_log` is false.
    pub rotation: Option<RotationRule>,
    /// `rotate_log_index` and `rotate_log_delta` as configured (shown even when
    /// `rotate_log` is false).
    pub rotate_log_index: RotationUnit,
    pub rotate_log_delta: u32,
    pub pre_write_transforms: Vec<Transform>,
    /// tcp and udp: how the stream (or each datagram) is cut into units.
    pub framing: Framing,
    /// Which CCSDS counter each unit's sequence is checked by, if any.
    pub sequence_check: Option<SequenceCheck>,
    /// TM frames: check each frame's FECF (CRC), counting `crc_errors`.
    pub fecf: bool,
    /// With `fecf`: frames whose FECF fails are not written.
    pub drop_bad_frames: bool,
    /// Requested socket receive buffer (udp).
    pub rcvbuf_bytes: usize,
    /// Close a file before the next record would take it past this size.
    pub rotate_max_bytes: Option<u64>,
    /// Close a file once it holds this many records.
    pub rotate_max_packets: Option<u64>,
    /// tcp: how long a connection attempt may take.
    pub connect_timeout: Duration,
    /// tcp: the longest wait between reconnection attempts.
    pub reconnect_max: Duration,
    /// ethernet: which frames to keep.
    pub direction: Direction,
    /// udp multicast: the interface (name or IPv4 address) to join the group on.
    pub interface: Option<String>,
    /// udp: write each datagram as an IP/UDP packet carrying the sender's address.
    pub record_source: bool,
    /// udp and ethernet: which time stamps a record.
    pub timestamps: Timestamps,
    /// The resolution of record timestamps, and so of the file's header.
    pub timestamp_precision: Precision,
    /// How often written records are forced to the disk (`None`: only on close).
    pub fsync_interval: Option<Duration>,
    /// Retention: at most this many files of this handler (the open one included).
    pub max_files: Option<u64>,
    /// Retention: at most this many bytes in this handler's files.
    pub max_bytes: Option<u64>,
    /// Retention: delete this handler's closed files older than this.
    pub max_age: Option<Duration>,
    /// A command (argv, no shell) run with each closed file's path appended.
    pub on_close: Vec<String>,
    /// Store and forward: the command that ships each closed file, retried until
    /// it succeeds (`None`: files are not shipped).
    pub ship: Option<ShipSpec>,
    /// Every other key with a string or number value, in the order given.
    pub metadata: Vec<(String, Value)>,
    pub origin: Origin,
}

/// Keys with a meaning of their own; everything else is metadata.
pub const HANDLER_KEYS: [&str; 32] = [
    "name",
    "conn_type",
    "address",
    "path",
    "file_name_pattern",
    "rotate_log",
    "rotate_log_index",
    "rotate_log_delta",
    "pre_write_transforms",
    "rcvbuf_bytes",
    "rotate_max_bytes",
    "rotate_max_packets",
    "connect_timeout_s",
    "reconnect_max_s",
    "direction",
    "interface",
    "record_source",
    "timestamps",
    "timestamp_precision",
    "fsync_interval_s",
    "max_files",
    "max_bytes",
    "max_age",
    "on_close",
    "ship",
    "ship_timeout_s",
    "ship_retry_max_s",
    "delete_after_ship",
    "framing",
    "sequence_check",
    "fecf",
    "drop_bad_frames",
];
/// Keys bsc sets itself; they cannot be configured.
const RESERVED_KEYS: [(&str, &str); 3] = [
    (
        "log_dir",
        "is set by bsc and cannot be configured (use root_log_directory and path)",
    ),
    (
        "_validated_log_dir_root",
        "is set by bsc and cannot be configured (use root_log_directory)",
    ),
    (
        "seq",
        "is bsc's file counter ({seq} in patterns) and cannot be set",
    ),
];

/// Fields the API takes for the address in place of `address` (with `conn_type`).
pub const API_KEYS: [&str; 3] = ["conn_type", "port", "loc"];

/// Refuses a key that is not a handler key but a typo of one (or, with
/// `api`, of `port`, `loc` or `conn_type`); see [`super::typos`].
fn refuse_typos(obj: &Map<String, Value>, api: bool) -> Result<(), FieldError> {
    let mut known = HANDLER_KEYS.to_vec();
    if api {
        known.extend(API_KEYS);
    }
    for key in obj.keys() {
        if let Some(meant) = typos::suggestion(key, &known) {
            return Err(field_err(
                key,
                format!(
                    "is not a handler key; {} (a key this close to one is not taken as metadata: rename it if it is metadata)",
                    typos::did_you_mean(meant)
                ),
            ));
        }
    }
    Ok(())
}

/// Whether `key` is one of the handler's own keys (not metadata).
pub fn is_handler_key(key: &str) -> bool {
    HANDLER_KEYS.contains(&key)
}

/// Validates one metadata key and value (any key that is not a handler key).
pub fn metadata_entry(key: &str, value: &Value) -> Result<(String, Value), FieldError> {
    if let Some((_, why)) = RESERVED_KEYS.iter().find(|(k, _)| *k == key) {
        return Err(field_err(key, *why));
    }
    if key.is_empty()
        || key.len() > 64
        || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(field_err(
            key,
            "is not a valid metadata key (letters, digits and '_', at most 64)",
        ));
    }
    match value {
        Value::String(s) if s.len() > MAX_METADATA_VALUE => Err(field_err(
            key,
            format!("metadata values are at most {MAX_METADATA_VALUE} bytes"),
        )),
        Value::String(s) if s.chars().any(char::is_control) => Err(field_err(
            key,
            "contains a control character; metadata values may not",
        )),
        Value::String(_) | Value::Number(_) => Ok((key.to_string(), value.clone())),
        other => Err(field_err(
            key,
            format!(
                "is not a handler key ({}) and metadata must be a string or a number, got {}",
                HANDLER_KEYS.join(", "),
                describe(other)
            ),
        )),
    }
}

/// Most metadata keys one handler may carry.
pub const MAX_METADATA_KEYS: usize = 64;
/// Longest metadata value, in bytes.
pub const MAX_METADATA_VALUE: usize = 255;

/// Refuses a control character (below U+0020, and U+007F..U+009F) anywhere in
/// a handler's values, naming the key: such values would reach file names, log
/// lines and state files.
fn refuse_control_characters(obj: &Map<String, Value>) -> Result<(), FieldError> {
    fn find(v: &Value) -> Option<char> {
        match v {
            Value::String(s) => s.chars().find(|c| c.is_control()),
            Value::Array(a) => a.iter().find_map(find),
            Value::Object(m) => m
                .keys()
                .find_map(|k| k.chars().find(|c| c.is_control()))
                .or_else(|| m.values().find_map(find)),
            _ => None,
        }
    }
    for (key, value) in obj {
        if let Some(c) = key.chars().find(|c| c.is_control()).or_else(|| find(value)) {
            return Err(field_err(
                &key.escape_debug().to_string(),
                format!(
                    "contains the control character {}; names, patterns and values may not",
                    c.escape_unicode()
                ),
            ));
        }
    }
    Ok(())
}

/// Checks a handler name: letters, digits, `-`, `_`, `.`; 1 to 64 characters; no `..`.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(format!(
            "must be 1 to {MAX_NAME_LEN} characters, got {}",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "{name:?} has {c:?}; a name may use letters, digits, '-', '_' and '.' only"
        ));
    }
    if name.contains("..") {
        return Err(format!("{name:?} contains \"..\""));
    }
    Ok(())
}

/// Text of a metadata value as Python's `str.format` would write it.
pub fn metadata_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A path pattern from REST must stay under the root: relative, no `..`, no `//`-tricks.
fn confined(s: &str) -> Result<(), String> {
    if s.len() > 255 {
        return Err(format!("is {} bytes long; at most 255", s.len()));
    }
    let p = Path::new(s);
    if p.is_absolute() {
        return Err(format!(
            "{s:?} is absolute; over the API it must be relative to the root directory"
        ));
    }
    if p.components().any(|c| matches!(c, Component::ParentDir)) || s.contains("..") {
        return Err(format!(
            "{s:?} contains \"..\"; it must stay inside the root directory"
        ));
    }
    Ok(())
}

/// `path`: a folder pattern; over the API confined to the root.
fn path_pattern(p: &str, origin: Origin) -> Result<Pattern, String> {
    if origin == Origin::Api {
        confined(p)?;
    }
    if p.contains('\0') {
        return Err("contains a NUL byte".into());
    }
    Pattern::parse(p).map_err(|e| e.0)
}

/// `file_name_pattern`: names a file; over the API confined to the root.
fn file_pattern(p: &str, origin: Origin) -> Result<Pattern, String> {
    if p.is_empty() || p.ends_with('/') {
        return Err("must name a file".into());
    }
    if p.contains('\0') {
        return Err("contains a NUL byte".into());
    }
    confined(p).or_else(|e| {
        // From the config file an absolute file pattern is odd but AIT allows
        // joining it; `..` is refused everywhere.
        if origin == Origin::ConfigFile && !p.contains("..") && p.len() <= 255 {
            Ok(())
        } else {
            Err(e)
        }
    })?;
    Pattern::parse(p).map_err(|e| e.0)
}

/// `pre_write_transforms`: a list of transforms in their string forms, or (from a
/// form) one string of them separated by commas (`apid:0x100,0x101, strip:4`: an
/// item without `:` that is not a transform's name goes on the list before it).
fn transforms(v: &Value) -> Result<Vec<Transform>, String> {
    match v {
        Value::Array(items) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Transform::parse(s),
                other => Err(format!(
                    "unknown transform {}; valid: {}",
                    describe(other),
                    Transform::FORMS
                )),
            })
            .collect(),
        Value::String(s) => {
            let mut forms: Vec<String> = Vec::new();
            for item in s.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let starts_one = item.contains(':') || Transform::parse(item).is_ok();
                match forms.last_mut() {
                    Some(last) if !starts_one => {
                        last.push(',');
                        last.push_str(item);
                    }
                    _ => forms.push(item.to_string()),
                }
            }
            forms.iter().map(|f| Transform::parse(f)).collect()
        }
        other => Err(format!(
            "must be a list of transforms ({}), got {}",
            Transform::FORMS,
            describe(other)
        )),
    }
}

/// An error of a nested value's own parser (`framing.length: ...`), named by the
/// key it gives, or by `key` when it gives none.
fn nested_err(key: &str, message: String) -> FieldError {
    match message.split_once(": ") {
        Some((k, m)) if k == key || k.starts_with(&format!("{key}.")) => field_err(k, m),
        _ => field_err(key, message),
    }
}

/// How a handler's closed files are shipped (`ship`, `ship_timeout_s`,
/// `ship_retry_max_s`, `delete_after_ship`); recorded in the journal with each
/// file waiting to ship, so a file keeps shipping after its handler is gone.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ShipSpec {
    /// The command, program first; the file's path is appended.
    pub argv: Vec<String>,
    /// Longest run of one attempt, in seconds (then it is killed: a failure).
    pub timeout_s: f64,
    /// Longest wait between attempts, in seconds (back-off from 5 s doubles up to it).
    pub retry_max_s: f64,
    /// Delete each file once shipped.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub delete_after: bool,
}

impl ShipSpec {
    /// Default `ship_timeout_s`.
    pub const DEFAULT_TIMEOUT_S: f64 = 300.0;
    /// Default `ship_retry_max_s`.
    pub const DEFAULT_RETRY_MAX_S: f64 = 600.0;

    pub fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout_s.clamp(1.0, 86_400.0))
    }

    pub fn retry_max(&self) -> Duration {
        Duration::from_secs_f64(self.retry_max_s.clamp(1.0, 86_400.0))
    }
}

/// `ship` and the keys that go with it. Config file only; a key that goes with
/// `ship` is refused without it.
fn ship_spec(f: &Fields, origin: Origin) -> Result<Option<ShipSpec>, FieldError> {
    const KEYS: [&str; 4] = [
        "ship",
        "ship_timeout_s",
        "ship_retry_max_s",
        "delete_after_ship",
    ];
    if origin == Origin::Api {
        if let Some(k) = KEYS.iter().find(|k| f.get(k).is_some()) {
            return Err(field_err(
                k,
                "store and forward can only be configured in the config file, not over the API",
            ));
        }
        return Ok(None);
    }
    let argv = f.read("ship", command)?;
    let timeout = f.seconds(
        "ship_timeout_s",
        ShipSpec::DEFAULT_TIMEOUT_S,
        1.0..=86_400.0,
    )?;
    let retry_max = f.seconds(
        "ship_retry_max_s",
        ShipSpec::DEFAULT_RETRY_MAX_S,
        1.0..=86_400.0,
    )?;
    let delete_after = f.boolean("delete_after_ship", false)?;
    match argv {
        Some(argv) => Ok(Some(ShipSpec {
            argv,
            timeout_s: timeout.as_secs_f64(),
            retry_max_s: retry_max.as_secs_f64(),
            delete_after,
        })),
        None => match KEYS[1..].iter().find(|k| f.get(k).is_some()) {
            Some(k) => Err(field_err(k, "only applies with ship (a command as a list)")),
            None => Ok(None),
        },
    }
}

/// `on_close` and `ship`: a command as a list of strings, program first.
fn command(v: &Value) -> Result<Vec<String>, String> {
    match v {
        Value::Array(items) if !items.is_empty() && items.len() <= 64 => items
            .iter()
            .map(|i| match i {
                Value::String(s) if !s.is_empty() && !s.contains('\0') => Ok(s.clone()),
                other => Err(format!(
                    "every element must be a non-empty string, got {}",
                    describe(other)
                )),
            })
            .collect(),
        other => Err(format!(
            "must be a command as a list of strings (program first, no shell), got {}",
            describe(other)
        )),
    }
}

impl HandlerSpec {
    /// Validates one handler definition (a JSON object with AIT's keys).
    pub fn from_json(obj: &Map<String, Value>, origin: Origin) -> Result<HandlerSpec, FieldError> {
        refuse_control_characters(obj)?;
        refuse_typos(obj, origin == Origin::Api)?;
        let f = Fields::new(obj);

        let name = f
            .string("name")?
            .ok_or_else(|| field_err("name", "is required"))?;
        validate_name(name).map_err(|m| field_err("name", m))?;
        f.require("conn_type", "is required (udp, tcp or ethernet)")?;
        // Given (required just above), so the default is never used.
        let conn_type = f.choice("conn_type", ConnType::NAMES, ConnType::Udp)?;
        let address = f
            .read("address", |v| Address::from_json(v, conn_type))?
            .ok_or_else(|| {
                field_err(
                    "address",
                    "is required: [host, port] (udp/tcp) or [interface, protocol] (ethernet)",
                )
            })?;

        let path = match f.string("path")? {
            None | Some("") => None,
            Some(p) => Some(path_pattern(p, origin).map_err(|m| field_err("path", m))?),
        };
        let file_name_pattern = f
            .string("file_name_pattern")?
            .unwrap_or(DEFAULT_FILE_NAME_PATTERN);
        let file_name_pattern = file_pattern(file_name_pattern, origin)
            .map_err(|m| field_err("file_name_pattern", m))?;

        let rotate_log = f.boolean("rotate_log", true)?;
        let rotate_log_index = f.parsed("rotate_log_index")?.unwrap_or(RotationUnit::Day);
        let rotate_log_delta = f.whole("rotate_log_delta", 1..=1_000_000)?.unwrap_or(1) as u32;
        let rotation = rotate_log.then_some(RotationRule {
            unit: rotate_log_index,
            delta: rotate_log_delta,
        });
        let pre_write_transforms = f
            .read("pre_write_transforms", transforms)?
            .unwrap_or_default();
        let framing = match f.get(framing::KEY) {
            None => Framing::None,
            Some(v) => Framing::from_json(v)?,
        };
        if framing != Framing::None && conn_type == ConnType::Ethernet {
            return Err(field_err(
                framing::KEY,
                "only applies to tcp and udp handlers, not ethernet",
            ));
        }
        let sequence_check = match f.get(sequence::KEY) {
            None => None,
            Some(Value::String(s)) if s == "none" => None,
            // From a form: the object as JSON text.
            Some(Value::String(s)) if s.trim_start().starts_with('{') => {
                let v = super::duplicates::read_json(s)
                    .map_err(|e| field_err(sequence::KEY, format!("not valid JSON: {e}")))?;
                Some(SequenceCheck::from_json(&v).map_err(|m| nested_err(sequence::KEY, m))?)
            }
            Some(v) => Some(SequenceCheck::from_json(v).map_err(|m| nested_err(sequence::KEY, m))?),
        };
        let fecf = f.boolean("fecf", false)?;
        let tm_frames = matches!(framing, Framing::TmFrame { .. })
            || matches!(sequence_check, Some(SequenceCheck::TmFrame { .. }));
        if fecf && !tm_frames {
            return Err(field_err(
                "fecf",
                "only applies to TM frames: set framing {\"kind\": \"ccsds_tm_frame\", ...} (or sequence_check \"ccsds_tm_frame\" when each datagram is one frame)",
            ));
        }
        let drop_bad_frames = f.boolean("drop_bad_frames", false)?;
        if drop_bad_frames && !fecf {
            return Err(field_err(
                "drop_bad_frames",
                "only applies with fecf: true (it drops frames whose FECF fails)",
            ));
        }
        let rcvbuf_bytes = f
            .whole("rcvbuf_bytes", 4096..=1 << 30)?
            .map_or(DEFAULT_RCVBUF_BYTES, |n| n as usize);
        let rotate_max_bytes = f.size("rotate_max_bytes")?;
        let rotate_max_packets = f.whole("rotate_max_packets", 1..)?;

        for (key, kinds) in [
            ("connect_timeout_s", &[ConnType::Tcp][..]),
            ("reconnect_max_s", &[ConnType::Tcp]),
            ("direction", &[ConnType::Ethernet]),
            ("interface", &[ConnType::Udp]),
            ("record_source", &[ConnType::Udp]),
            ("timestamps", &[ConnType::Udp, ConnType::Ethernet]),
        ] {
            if f.get(key).is_some() && !kinds.contains(&conn_type) {
                let names: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
                return Err(field_err(
                    key,
                    format!(
                        "only applies to {} handlers, not {conn_type}",
                        names.join(" and ")
                    ),
                ));
            }
        }
        let connect_timeout = f.seconds("connect_timeout_s", 5.0, 0.1..=86_400.0)?;
        let reconnect_max = f.seconds("reconnect_max_s", 30.0, 0.5..=86_400.0)?;
        let direction = f.choice("direction", Direction::NAMES, Direction::Both)?;
        let interface = match f.string("interface")? {
            None | Some("") => None,
            Some(i) => {
                validate_host(i).map_err(|m| field_err("interface", m))?;
                let group = address
                    .host
                    .parse::<std::net::IpAddr>()
                    .ok()
                    .filter(|ip| ip.is_multicast());
                if group.is_none() {
                    return Err(field_err(
                        "interface",
                        "only applies when the address is a multicast group",
                    ));
                }
                Some(i.to_string())
            }
        };
        let record_source = f.boolean("record_source", false)?;
        let timestamps = f.choice("timestamps", Timestamps::NAMES, Timestamps::Kernel)?;
        let timestamp_precision =
            f.choice("timestamp_precision", Precision::NAMES, Precision::Micro)?;

        // 0: only when a file closes.
        let fsync_interval =
            Some(f.seconds("fsync_interval_s", 10.0, 0.0..=86_400.0)?).filter(|d| !d.is_zero());
        let max_files = f.whole("max_files", 1..)?;
        let max_bytes = f.size("max_bytes")?;
        let max_age = f.age("max_age")?;
        let on_close = f.read("on_close", command)?.unwrap_or_default();
        if origin == Origin::Api && !on_close.is_empty() {
            return Err(field_err(
                "on_close",
                "commands can only be configured in the config file, not over the API",
            ));
        }
        let ship = ship_spec(&f, origin)?;

        let mut metadata = Vec::new();
        for (key, value) in obj {
            if is_handler_key(key) {
                continue;
            }
            metadata.push(metadata_entry(key, value)?);
        }
        if metadata.len() > MAX_METADATA_KEYS {
            return Err(field_err(
                "metadata",
                format!(
                    "{} metadata keys; a handler carries at most {MAX_METADATA_KEYS}",
                    metadata.len()
                ),
            ));
        }

        let spec = HandlerSpec {
            name: name.to_string(),
            conn_type,
            address,
            path,
            file_name_pattern,
            rotation,
            rotate_log_index,
            rotate_log_delta,
            pre_write_transforms,
            framing,
            sequence_check,
            fecf,
            drop_bad_frames,
            rcvbuf_bytes,
            rotate_max_bytes,
            rotate_max_packets,
            connect_timeout,
            reconnect_max,
            direction,
            interface,
            record_source,
            timestamps,
            timestamp_precision,
            fsync_interval,
            max_files,
            max_bytes,
            max_age,
            on_close,
            ship,
            metadata,
            origin,
        };
        spec.check_pattern_keys()?;
        Ok(spec)
    }

    /// Validates a handler started over the API (`POST /<name>/start`): `name`
    /// from the URL, the address as `conn_type`, `port` and `loc` (default `""`,
    /// every interface), every other field as in the config file but confined to
    /// the root. AIT's client extras `name`, `service_host` and `service_port`
    /// are dropped; `log_dir_path`, `log_dir` and `address` are refused. An error
    /// in the address is named `loc`, the field the client sent.
    pub fn from_api_fields(
        name: &str,
        mut fields: Map<String, Value>,
    ) -> Result<HandlerSpec, FieldError> {
        // AIT's client sends these too; the name is the one in the URL.
        for extra in ["name", "service_host", "service_port"] {
            fields.remove(extra);
        }
        if let Some(key) = ["log_dir_path", "log_dir", "address"]
            .into_iter()
            .find(|k| fields.contains_key(*k))
        {
            return Err(field_err(key, "not accepted over the API; use loc and port for the address and path (relative to the root directory) for the folder"));
        }
        let f = Fields::new(&fields);
        f.require("conn_type", "is required (udp, tcp or ethernet)")?;
        // Given (required just above), so the default is never used.
        let conn_type = f.choice("conn_type", ConnType::NAMES, ConnType::Udp)?;
        let min_port = if conn_type == ConnType::Ethernet {
            0
        } else {
            1
        };
        let port = f
            .port("port", min_port)?
            .ok_or_else(|| field_err("port", "is required"))?;
        let loc = f.string("loc")?.unwrap_or("").to_string();
        for key in API_KEYS {
            fields.remove(key);
        }
        fields.insert("name".into(), json!(name));
        fields.insert("conn_type".into(), json!(conn_type.as_str()));
        fields.insert("address".into(), json!([loc, port]));
        HandlerSpec::from_json(&fields, Origin::Api).map_err(|e| match e.key.as_str() {
            "address" => field_err("loc", e.message),
            _ => e,
        })
    }

    /// The handler as the keys [`HandlerSpec::from_json`] accepts (what the state
    /// file of API-added handlers stores); `from_json(to_json())` gives it back.
    pub fn to_json(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("name".into(), json!(self.name));
        m.insert("conn_type".into(), json!(self.conn_type.as_str()));
        m.insert(
            "address".into(),
            json!([self.address.host, self.address.port]),
        );
        if let Some(p) = &self.path {
            m.insert("path".into(), json!(p.source()));
        }
        m.insert(
            "file_name_pattern".into(),
            json!(self.file_name_pattern.source()),
        );
        m.insert("rotate_log".into(), json!(self.rotation.is_some()));
        m.insert(
            "rotate_log_index".into(),
            json!(self.rotate_log_index.to_string()),
        );
        m.insert("rotate_log_delta".into(), json!(self.rotate_log_delta));
        m.insert(
            "pre_write_transforms".into(),
            json!(self
                .pre_write_transforms
                .iter()
                .map(|t| t.to_string())
                .collect::<Vec<_>>()),
        );
        if self.framing != Framing::None {
            m.insert(framing::KEY.into(), self.framing.to_json());
        }
        if let Some(c) = &self.sequence_check {
            m.insert(sequence::KEY.into(), c.to_json());
        }
        if self.fecf {
            m.insert("fecf".into(), json!(true));
            m.insert("drop_bad_frames".into(), json!(self.drop_bad_frames));
        }
        m.insert("rcvbuf_bytes".into(), json!(self.rcvbuf_bytes));
        let optional = [
            ("rotate_max_bytes", self.rotate_max_bytes.map(|v| json!(v))),
            (
                "rotate_max_packets",
                self.rotate_max_packets.map(|v| json!(v)),
            ),
            ("max_files", self.max_files.map(|v| json!(v))),
            ("max_bytes", self.max_bytes.map(|v| json!(v))),
            ("max_age", self.max_age.map(|v| json!(v.as_secs_f64()))),
        ];
        for (k, v) in optional {
            if let Some(v) = v {
                m.insert(k.into(), v);
            }
        }
        m.insert(
            "fsync_interval_s".into(),
            json!(self.fsync_interval.map_or(0.0, |d| d.as_secs_f64())),
        );
        m.insert(
            "timestamp_precision".into(),
            json!(self.timestamp_precision.as_str()),
        );
        let timestamps = json!(self.timestamps.as_str());
        match self.conn_type {
            ConnType::Udp => {
                m.insert("record_source".into(), json!(self.record_source));
                m.insert("timestamps".into(), timestamps);
                if let Some(i) = &self.interface {
                    m.insert("interface".into(), json!(i));
                }
            }
            ConnType::Tcp => {
                m.insert(
                    "connect_timeout_s".into(),
                    json!(self.connect_timeout.as_secs_f64()),
                );
                m.insert(
                    "reconnect_max_s".into(),
                    json!(self.reconnect_max.as_secs_f64()),
                );
            }
            ConnType::Ethernet => {
                m.insert("direction".into(), json!(self.direction.as_str()));
                m.insert("timestamps".into(), timestamps);
            }
        }
        if !self.on_close.is_empty() {
            m.insert("on_close".into(), json!(self.on_close));
        }
        if let Some(ship) = &self.ship {
            m.insert("ship".into(), json!(ship.argv));
            m.insert("ship_timeout_s".into(), json!(ship.timeout_s));
            m.insert("ship_retry_max_s".into(), json!(ship.retry_max_s));
            m.insert("delete_after_ship".into(), json!(ship.delete_after));
        }
        for (k, v) in &self.metadata {
            m.insert(k.clone(), v.clone());
        }
        m
    }

    /// This handler with its metadata updated from `fields` (what `POST
    /// /<name>/rotate` carries): only metadata may change, every value is checked
    /// as at start, and the patterns must still render.
    pub fn with_metadata(&self, fields: &Map<String, Value>) -> Result<HandlerSpec, FieldError> {
        refuse_control_characters(fields)?;
        refuse_typos(fields, true)?;
        let mut spec = self.clone();
        for (key, value) in fields {
            if is_handler_key(key) || API_KEYS.contains(&key.as_str()) {
                return Err(field_err(
                    key,
                    format!("only metadata can be set when rotating; stop and start the handler to change {key}"),
                ));
            }
            let (key, value) = metadata_entry(key, value)?;
            match spec.metadata.iter_mut().find(|(k, _)| *k == key) {
                Some(slot) => slot.1 = value,
                None => spec.metadata.push((key, value)),
            }
        }
        if spec.metadata.len() > MAX_METADATA_KEYS {
            return Err(field_err(
                "metadata",
                format!("a handler carries at most {MAX_METADATA_KEYS} metadata keys; this rotate would give it {}", spec.metadata.len()),
            ));
        }
        spec.check_pattern_keys()?;
        Ok(spec)
    }

    /// Every `{key}` in `path` and `file_name_pattern` exists, and its value cannot
    /// change the folder structure (no `/`, not `.` or `..`). Only `{seq}` takes a
    /// width.
    pub fn check_pattern_keys(&self) -> Result<(), FieldError> {
        for (field, pattern) in [
            ("path", self.path.as_ref()),
            ("file_name_pattern", Some(&self.file_name_pattern)),
        ] {
            let Some(pattern) = pattern else { continue };
            for (key, width) in pattern.keys() {
                if key == "seq" {
                    continue;
                }
                if let Some(w) = width {
                    return Err(field_err(
                        field,
                        format!("{{{key}:{w}}}: only {{seq}} takes a width"),
                    ));
                }
                let value = self.key_value(key).ok_or_else(|| {
                    field_err(
                        field,
                        format!(
                            "uses {{{key}}} but the handler has no key {key:?} (it has: {})",
                            self.key_names().join(", ")
                        ),
                    )
                })?;
                if value.contains('/') || value.contains('\0') || value == "." || value == ".." {
                    return Err(field_err(
                        key,
                        format!("value {value:?} is used in {field} and must not contain '/' or be '.' or '..'"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The value `{key}` stands for: the handler's own fields, then metadata
    /// (`{seq}` is given when rendering).
    pub fn key_value(&self, key: &str) -> Option<String> {
        match key {
            "name" => Some(self.name.clone()),
            "conn_type" => Some(self.conn_type.as_str().to_string()),
            "host" => Some(self.address.host.clone()),
            "port" => Some(self.address.port.to_string()),
            _ => self
                .metadata
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| metadata_text(v)),
        }
    }

    fn key_names(&self) -> Vec<String> {
        let mut names: Vec<String> = ["name", "conn_type", "host", "port", "seq"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        names.extend(self.metadata.iter().map(|(k, _)| k.clone()));
        names
    }

    /// The checked place of file number `seq` of this handler for a unit received
    /// at `t`: root (or, from the config file, an absolute `path`'s literal
    /// folders), then `path`, then `file_name_pattern`, every code and `{key}`
    /// rendered. Fails, saying why, where a rendered name is empty, `.`, `..`, too
    /// long or has a control character, or the path would be in bsc's state folder
    /// (see [`crate::paths`]).
    pub fn file_path(
        &self,
        root: &Path,
        t: OffsetDateTime,
        seq: u64,
    ) -> Result<CapturePath, String> {
        let mut base = root.to_path_buf();
        let mut rel = String::new();
        if let Some(p) = &self.path {
            let dir = self.render(p, t, seq).map_err(|e| format!("path: {e}"))?;
            // Whether a path is absolute is the pattern's property, never the
            // rendered value's: `{a}/x` with an empty `a` is refused below, not
            // taken as `/x`. Only the config file may give an absolute pattern.
            let source = p.source();
            let (below, pattern_below) = match source.starts_with('/') {
                true => {
                    let literal = literal_base(source);
                    base = PathBuf::from(literal);
                    let rest = dir.strip_prefix(literal).unwrap_or(&dir);
                    let pattern_rest = &source[literal.len()..];
                    (
                        rest.strip_prefix('/').unwrap_or(rest),
                        pattern_rest.strip_prefix('/').unwrap_or(pattern_rest),
                    )
                }
                false => (dir.as_str(), source),
            };
            // One trailing '/' in the pattern (`path: vc0/`) is the folder itself.
            let (below, pattern_below) = match pattern_below.strip_suffix('/') {
                Some(p) => (below.strip_suffix('/').unwrap_or(below), p),
                None => (below, pattern_below),
            };
            // Folders the pattern has are always checked, even if they rendered empty.
            if !pattern_below.is_empty() {
                rel.push_str(below);
                rel.push('/');
            }
        }
        let file = self
            .render(&self.file_name_pattern, t, seq)
            .map_err(|e| format!("file_name_pattern: {e}"))?;
        match self.file_name_pattern.source().starts_with('/') {
            // An absolute file pattern (config file only) replaces the folder, as
            // Python's os.path.join does.
            true => {
                let source = self.file_name_pattern.source();
                let mut literal = literal_base(source);
                if literal == source {
                    // No code at all: the last component is the file itself.
                    literal = literal.rsplit_once('/').map_or("/", |(d, _)| d);
                }
                let literal = if literal.is_empty() { "/" } else { literal };
                base = PathBuf::from(literal);
                let below = file.strip_prefix(literal).unwrap_or(&file);
                rel = below.strip_prefix('/').unwrap_or(below).to_string();
            }
            false => rel.push_str(&file),
        }
        CapturePath::new(base, &rel, root).map_err(|e| {
            format!(
                "the file path {:?} cannot be used: {e}",
                Path::new(&rel).display()
            )
        })
    }

    /// The file name the pattern gives at `t` with `{seq}` left as `marker` (to
    /// recognise the handler's files in a folder), or `None` if `path` uses
    /// `{seq}` too (its files are then spread over folders) or it does not render.
    pub fn file_name_template(&self, t: OffsetDateTime, marker: &str) -> Option<String> {
        if self
            .path
            .as_ref()
            .is_some_and(|p| p.keys().any(|(k, _)| k == "seq"))
        {
            return None;
        }
        let name = self
            .file_name_pattern
            .render(t, |key, _| match key {
                "seq" => Some(marker.to_string()),
                _ => self.key_value(key),
            })
            .ok()?;
        Some(name.rsplit('/').next().unwrap_or(&name).to_string())
    }

    fn render(&self, p: &Pattern, t: OffsetDateTime, seq: u64) -> Result<String, PatternError> {
        p.render(t, |key, width| match key {
            "seq" => Some(format!("{seq:0w$}", w = width.unwrap_or(4))),
            _ => self.key_value(key),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::path::PathBuf;

    fn spec(v: Value) -> Result<HandlerSpec, FieldError> {
        HandlerSpec::from_json(v.as_object().unwrap(), Origin::ConfigFile)
    }

    fn api(v: Value) -> Result<HandlerSpec, FieldError> {
        HandlerSpec::from_json(v.as_object().unwrap(), Origin::Api)
    }

    #[test]
    fn ship_keys_read_back_and_hostile_values_are_refused() {
        let base = json!({"name": "h", "conn_type": "udp", "address": ["127.0.0.1", 9000]});
        let with = |pairs: &[(&str, Value)]| {
            let mut o = base.clone();
            for (k, v) in pairs {
                o[*k] = v.clone();
            }
            o
        };
        let s = spec(with(&[("ship", json!(["/bin/up", "--to", "s3://b/"]))])).unwrap();
        assert_eq!(
            s.ship,
            Some(ShipSpec {
                argv: vec!["/bin/up".into(), "--to".into(), "s3://b/".into()],
                timeout_s: 300.0,
                retry_max_s: 600.0,
                delete_after: false,
            })
        );
        let s = spec(with(&[
            ("ship", json!(["up"])),
            ("ship_timeout_s", json!(30)),
            ("ship_retry_max_s", json!("2.5")),
            ("delete_after_ship", json!(true)),
        ]))
        .unwrap();
        let ship = s.ship.clone().unwrap();
        assert_eq!(
            (ship.timeout_s, ship.retry_max_s, ship.delete_after),
            (30.0, 2.5, true)
        );
        // What GET / shows reads back as the same handler.
        let back = spec(Value::Object(s.to_json())).unwrap();
        assert_eq!(back.ship, s.ship);
        assert_eq!(spec(base.clone()).unwrap().ship, None);
        let long: Vec<String> = (0..65).map(|i| format!("a{i}")).collect();
        for (pairs, want) in [
            (
                vec![("ship", json!([]))],
                "ship: must be a command as a list",
            ),
            (
                vec![("ship", json!(""))],
                "ship: must be a command as a list",
            ),
            (
                vec![("ship", json!("/bin/up"))],
                "ship: must be a command as a list",
            ),
            (
                vec![("ship", json!([""]))],
                "ship: every element must be a non-empty string",
            ),
            (
                vec![("ship", json!(["up", 3]))],
                "ship: every element must be a non-empty string",
            ),
            (
                vec![("ship", json!(["up", null]))],
                "ship: every element must be a non-empty string",
            ),
            (
                vec![("ship", json!(["up", ["x"]]))],
                "ship: every element must be a non-empty string",
            ),
            (
                vec![("ship", json!({"a": 1}))],
                "ship: must be a command as a list",
            ),
            (
                vec![("ship", json!(long))],
                "ship: must be a command as a list",
            ),
            (
                vec![("ship", json!(["up\nrm"]))],
                "ship: contains the control character",
            ),
            (
                vec![("ship", json!(["up\u{0}"]))],
                "ship: contains the control character",
            ),
            (
                vec![("ship", json!(["up"])), ("ship_timeout_s", json!(0))],
                "ship_timeout_s: must be a number of seconds from 1 to 86400",
            ),
            (
                vec![("ship", json!(["up"])), ("ship_timeout_s", json!(-5))],
                "ship_timeout_s: must be a number",
            ),
            (
                vec![("ship", json!(["up"])), ("ship_timeout_s", json!(1e300))],
                "ship_timeout_s: must be a number",
            ),
            (
                vec![("ship", json!(["up"])), ("ship_timeout_s", json!("nan"))],
                "ship_timeout_s: must be a number",
            ),
            (
                vec![("ship", json!(["up"])), ("ship_retry_max_s", json!(0))],
                "ship_retry_max_s: must be a number",
            ),
            (
                vec![
                    ("ship", json!(["up"])),
                    ("ship_retry_max_s", json!(18446744073709551615u64)),
                ],
                "ship_retry_max_s: must be a number",
            ),
            (
                vec![("ship", json!(["up"])), ("ship_retry_max_s", json!([1]))],
                "ship_retry_max_s: must be a number",
            ),
            (
                vec![
                    ("ship", json!(["up"])),
                    ("delete_after_ship", json!("yes please")),
                ],
                "delete_after_ship: must be true or false",
            ),
            (
                vec![("ship_timeout_s", json!(5))],
                "ship_timeout_s: only applies with ship",
            ),
            (
                vec![("delete_after_ship", json!(true))],
                "delete_after_ship: only applies with ship",
            ),
        ] {
            let e = spec(with(&pairs)).unwrap_err().to_string();
            assert!(e.starts_with(want), "{pairs:?}: {e}");
        }
        // Config file only: refused over the API, each key.
        for k in [
            "ship",
            "ship_timeout_s",
            "ship_retry_max_s",
            "delete_after_ship",
        ] {
            let v = if k == "ship" {
                json!(["/bin/true"])
            } else {
                json!(1)
            };
            let mut o = base.clone();
            o[k] = v;
            let e = api(o).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!(
                    "{k}: store and forward can only be configured in the config file"
                )),
                "{e}"
            );
        }
        // Typos of the new keys are typos, not metadata.
        for (typo, meant) in [
            ("shp", None),
            ("ship_timeout", Some("ship_timeout_s")),
            ("ship_retry_max", Some("ship_retry_max_s")),
            ("delete_afer_ship", Some("delete_after_ship")),
            ("hsip", Some("ship")),
        ] {
            assert_eq!(typos::suggestion(typo, &HANDLER_KEYS), meant, "{typo}");
        }
    }

    #[test]
    fn telemetry_keys_read_back_and_errors_name_the_key() {
        let base = json!({"name": "h", "conn_type": "tcp", "address": ["127.0.0.1", 9000]});
        let with = |k: &str, v: Value| {
            let mut o = base.clone();
            o[k] = v;
            o
        };
        let s = spec(json!({
            "name": "h", "conn_type": "tcp", "address": ["127.0.0.1", 9000],
            "framing": {"kind": "ccsds_tm_frame", "length": 1115, "keep_sync": true},
            "sequence_check": {"kind": "ccsds_tm_frame", "offset": 4},
            "fecf": true, "drop_bad_frames": true,
            "pre_write_transforms": "strip:4, vcid:0,3, identity_transform",
        }))
        .unwrap();
        assert_eq!(
            s.framing,
            Framing::TmFrame {
                length: 1115,
                keep_sync: true
            }
        );
        assert_eq!(s.sequence_check, Some(SequenceCheck::TmFrame { offset: 4 }));
        assert!(s.fecf && s.drop_bad_frames);
        let forms: Vec<String> = s
            .pre_write_transforms
            .iter()
            .map(|t| t.to_string())
            .collect();
        assert_eq!(forms, ["strip:4", "vcid:0,3", "identity"]);
        assert_eq!(spec(Value::Object(s.to_json())).unwrap(), s);

        for (obj, key, says) in [
            (
                with("framing", json!({"kind": "ccsds_tm_frame"})),
                "framing.length",
                "required",
            ),
            (
                with("framing", json!({"kind": "fixed", "length": 0})),
                "framing.length",
                "",
            ),
            (with("framing", json!("hdlc")), "framing", "unknown framing"),
            (
                with("sequence_check", json!("tm")),
                "sequence_check.kind",
                "valid",
            ),
            (with("fecf", json!(true)), "fecf", "TM frames"),
            (
                with("drop_bad_frames", json!(true)),
                "drop_bad_frames",
                "fecf",
            ),
            (
                with("pre_write_transforms", json!(["rot13"])),
                "pre_write_transforms",
                "strip:N",
            ),
            (
                with("pre_write_transforms", json!("apid:0x800")),
                "pre_write_transforms",
                "0..2047",
            ),
        ] {
            let e = spec(obj.clone()).unwrap_err();
            assert_eq!(e.key, key, "{obj}: {e}");
            assert!(e.message.contains(says), "{obj}: {e}");
        }
        let mut eth = json!({"name": "h", "conn_type": "ethernet", "address": ["lo", 0]});
        eth["framing"] = json!("kiss");
        assert_eq!(spec(eth).unwrap_err().key, "framing");
        assert_eq!(
            typos::suggestion("sequence_chek", &HANDLER_KEYS),
            Some("sequence_check")
        );
    }

    #[test]
    fn ait_defaults() {
        let s = spec(json!({"name": "h1", "conn_type": "udp", "address": ["", 8500]})).unwrap();
        assert_eq!(s.file_name_pattern.source(), DEFAULT_FILE_NAME_PATTERN);
        assert_eq!(
            s.rotation,
            Some(RotationRule {
                unit: RotationUnit::Day,
                delta: 1
            })
        );
        assert_eq!(s.path, None);
        assert!(s.pre_write_transforms.is_empty());
        assert_eq!(s.rcvbuf_bytes, DEFAULT_RCVBUF_BYTES);
        assert_eq!(s.address.python_repr(), "['', 8500]");
    }

    #[test]
    fn metadata_is_kept_and_usable_in_patterns() {
        let s = spec(json!({"name": "tlm", "conn_type": "udp", "address": ["127.0.0.1", 8500],
            "path": "{mission}/%j", "file_name_pattern": "{name}-{pass}.pcap", "mission": "ait", "pass": 7,
            "rotate_log": "False"}))
        .unwrap();
        assert_eq!(
            s.metadata,
            vec![
                ("mission".to_string(), json!("ait")),
                ("pass".to_string(), json!(7))
            ]
        );
        assert_eq!(s.rotation, None);
        let t = time::Date::from_calendar_date(2026, time::Month::November, 28)
            .unwrap()
            .midnight()
            .assume_utc();
        assert_eq!(
            s.file_path(Path::new("/r"), t, 1).unwrap().full(),
            PathBuf::from("/r/ait/332/tlm-7.pcap")
        );
    }

    #[test]
    fn each_bad_key_is_named() {
        let base = json!({"name": "h", "conn_type": "udp", "address": ["", 8500]});
        let with = |k: &str, v: Value| {
            let mut o = base.clone();
            o[k] = v;
            o
        };
        let cases = [
            (with("name", json!("a/b")), "name", "'/'"),
            (with("name", json!("a..b")), "name", ".."),
            (with("name", json!("x".repeat(65))), "name", "1 to 64"),
            (with("name", json!(5)), "name", "must be a string"),
            (with("conn_type", json!("bogus")), "conn_type", "not one of"),
            (with("address", json!(["", 70000])), "address", "0..65535"),
            (with("address", json!(["", 0])), "address", "port 0"),
            (with("address", json!(["", -1])), "address", "0..65535"),
            (with("address", json!("8500")), "address", "must be a list"),
            (with("address", json!(["a b", 1])), "address", "' '"),
            (
                with("rotate_log", json!("yes")),
                "rotate_log",
                "true or false",
            ),
            (
                with("rotate_log_index", json!("fortnight")),
                "rotate_log_index",
                "fortnight",
            ),
            (
                with("rotate_log_delta", json!(0)),
                "rotate_log_delta",
                "1 to",
            ),
            (
                with("pre_write_transforms", json!(["gzip"])),
                "pre_write_transforms",
                "unknown transform",
            ),
            (
                with("file_name_pattern", json!("%Q.pcap")),
                "file_name_pattern",
                "%Q",
            ),
            (
                with("file_name_pattern", json!("{satellite}.pcap")),
                "file_name_pattern",
                "{satellite}",
            ),
            (
                with("file_name_pattern", json!("../x.pcap")),
                "file_name_pattern",
                "..",
            ),
            (with("path", json!("{x}")), "path", "no key"),
            (with("log_dir", json!("/tmp")), "log_dir", "set by bsc"),
            (with("flags", json!([1])), "flags", "string or a number"),
            (with("rcvbuf_bytes", json!(12)), "rcvbuf_bytes", "4096"),
        ];
        for (v, key, needle) in cases {
            let e = spec(v.clone()).unwrap_err();
            assert_eq!(e.key, key, "{v}");
            assert!(e.message.contains(needle), "{v}: {e}");
        }
        let e = spec(json!({"conn_type": "udp", "address": ["", 1]})).unwrap_err();
        assert_eq!(
            (e.key.as_str(), e.message.as_str()),
            ("name", "is required")
        );
        let e = spec(json!({"name": "a", "conn_type": "udp", "address": ["", 1], "file_name_pattern": "{sat}.pcap", "sat": "../x"})).unwrap_err();
        assert_eq!(e.key, "sat");
    }

    #[test]
    fn api_paths_are_confined() {
        let base = |k: &str, v: &str| json!({"name": "h", "conn_type": "udp", "address": ["", 8500], k: v});
        assert!(api(base("path", "sub/dir")).is_ok());
        assert!(api(base("path", "../escape"))
            .unwrap_err()
            .message
            .contains(".."));
        assert!(api(base("path", "/etc"))
            .unwrap_err()
            .message
            .contains("absolute"));
        assert!(api(base("file_name_pattern", "/etc/x.pcap"))
            .unwrap_err()
            .message
            .contains("absolute"));
        assert!(api(base("path", &"a".repeat(256)))
            .unwrap_err()
            .message
            .contains("255"));
        assert!(spec(base("path", "/data/bsc")).is_ok());
    }

    #[test]
    fn rendered_paths_cannot_leave_their_base_whatever_the_metadata() {
        let t = OffsetDateTime::UNIX_EPOCH;
        let root = Path::new("/r");
        let with = |fields: Value| {
            let mut o = json!({"name": "h", "conn_type": "udp", "address": ["", 8500]});
            for (k, v) in fields.as_object().unwrap() {
                o[k] = v.clone();
            }
            api(o).unwrap()
        };
        let h = with(json!({"path": "{a}/tmp/esc", "a": "x"}));
        assert_eq!(
            h.file_path(root, t, 1).unwrap().full(),
            PathBuf::from("/r/x/tmp/esc/1970-01-01-00-00-00-h.pcap")
        );
        for (pattern_key, pattern, value) in [
            ("path", "{a}/tmp/esc", ""),
            ("path", ".{a}.", ""),
            ("path", "x/{a}", "."),
            ("file_name_pattern", "{a}", ""),
            ("file_name_pattern", ".{a}.", ""),
            ("file_name_pattern", "{a}{a}", &"y".repeat(200)),
            ("path", "{a}", ".bsc"),
        ] {
            let h = with(json!({pattern_key: pattern, "a": "x"}));
            let changed = h.with_metadata(json!({"a": value}).as_object().unwrap());
            let refused = match changed {
                Err(_) => true,
                Ok(h) => h.file_path(root, t, 1).is_err(),
            };
            assert!(refused, "{pattern_key}={pattern:?} with a={value:?}");
        }
        // Control characters and too many keys are refused in rotate too.
        assert!(h
            .with_metadata(json!({"a": "x\n<0>kernel"}).as_object().unwrap())
            .is_err());
        let many: Map<String, Value> = (0..64).map(|i| (format!("k{i}"), json!("v"))).collect();
        assert!(h
            .with_metadata(&many)
            .unwrap_err()
            .message
            .contains("at most 64"));
        // From the config file an absolute path keeps its literal folders as base.
        let c = spec(json!({"name": "h", "conn_type": "udp", "address": ["", 1], "path": "/data/{m}/%Y", "m": "vc0", "file_name_pattern": "f.pcap"})).unwrap();
        let p = c.file_path(root, t, 1).unwrap();
        assert_eq!(
            (p.base(), p.full()),
            (Path::new("/data"), PathBuf::from("/data/vc0/1970/f.pcap"))
        );
        let c = spec(json!({"name": "h", "conn_type": "udp", "address": ["", 1], "path": "/data/{m}", "m": "", "file_name_pattern": "f.pcap"})).unwrap();
        assert!(c.file_path(root, t, 1).is_err());
        assert!(spec(json!({"name": "h", "conn_type": "udp", "address": ["", 1], "file_name_pattern": "a\tb.pcap"})).is_err());
    }

    #[test]
    fn numbers_from_forms() {
        let s = spec(json!({"name": "h", "conn_type": "udp", "address": ["", "8500"], "rotate_log_delta": "3", "pre_write_transforms": "identity, identity"})).unwrap();
        assert_eq!(s.address.port, 8500);
        assert_eq!(s.rotate_log_delta, 3);
        assert_eq!(s.pre_write_transforms.len(), 2);
    }

    #[test]
    fn source_options_apply_to_their_conn_type_only() {
        let base = |ct: &str, host: &str, k: &str, v: Value| json!({"name": "h", "conn_type": ct, "address": [host, 7], k: v});
        let s = spec(base("tcp", "10.0.0.1", "connect_timeout_s", json!(2.5))).unwrap();
        assert_eq!(
            (s.connect_timeout, s.reconnect_max),
            (Duration::from_millis(2500), Duration::from_secs(30))
        );
        assert_eq!(
            spec(base("udp", "", "connect_timeout_s", json!(2)))
                .unwrap_err()
                .message,
            "only applies to tcp handlers, not udp"
        );
        assert_eq!(
            spec(base("ethernet", "eth0", "direction", json!("in")))
                .unwrap()
                .direction,
            Direction::In
        );
        assert!(spec(base("ethernet", "eth0", "direction", json!("out")))
            .unwrap_err()
            .message
            .contains("both, in"));
        assert!(spec(base("udp", "", "direction", json!("in"))).is_err());
        assert!(spec(base("udp", "239.1.2.3", "interface", json!("lo"))).is_ok());
        assert!(spec(base("udp", "127.0.0.1", "interface", json!("lo")))
            .unwrap_err()
            .message
            .contains("multicast"));
        assert!(
            spec(base("udp", "", "record_source", json!("True")))
                .unwrap()
                .record_source
        );
        assert_eq!(
            spec(base("udp", "", "timestamps", json!("read")))
                .unwrap()
                .timestamps,
            Timestamps::Read
        );
        assert_eq!(
            spec(base("ethernet", "eth0", "timestamps", json!(null)))
                .unwrap()
                .timestamps,
            Timestamps::Kernel
        );
        assert!(spec(base("tcp", "h", "timestamps", json!("kernel"))).is_err());
        // timestamp_precision: every kind of source, `us` by default.
        for (kind, host) in [("udp", ""), ("tcp", "h"), ("ethernet", "eth0")] {
            let ns = spec(base(kind, host, "timestamp_precision", json!("ns"))).unwrap();
            assert_eq!(ns.timestamp_precision, Precision::Nano);
            assert_eq!(ns.to_json()["timestamp_precision"], json!("ns"));
            let us = spec(base(kind, host, "timestamp_precision", json!(null))).unwrap();
            assert_eq!(us.timestamp_precision, Precision::Micro);
            assert_eq!(us.to_json()["timestamp_precision"], json!("us"));
        }
        let e = spec(base("udp", "", "timestamp_precision", json!("ms"))).unwrap_err();
        assert!(e.message.contains("us, ns"), "{}", e.message);
        assert!(spec(base("tcp", "10.0.0.1", "reconnect_max_s", json!(0.1)))
            .unwrap_err()
            .message
            .contains("0.5"));
    }

    #[test]
    fn to_json_round_trips() {
        for v in [
            json!({"name": "a", "conn_type": "udp", "address": ["127.0.0.1", 9], "path": "x/%j", "file_name_pattern": "{name}-{seq:6}.pcap",
                   "rotate_log": false, "rotate_log_index": "hours", "rotate_max_bytes": "1MB", "max_files": 3, "max_age": "2d",
                   "record_source": true, "timestamps": "read", "fsync_interval_s": 0, "pass": 7, "sat": "aqua"}),
            json!({"name": "b", "conn_type": "tcp", "address": ["10.0.0.1", 7000], "connect_timeout_s": 1.5, "reconnect_max_s": 10}),
            json!({"name": "c", "conn_type": "ethernet", "address": ["eth1", 0x88b5], "direction": "in", "max_bytes": "1GiB"}),
        ] {
            let a = spec(v).unwrap();
            let b = HandlerSpec::from_json(&a.to_json(), Origin::ConfigFile).unwrap();
            assert_eq!(a, b);
        }
    }

    #[test]
    fn size_limits_and_seq_widths() {
        let s = spec(json!({"name": "h", "conn_type": "udp", "address": ["", 1], "rotate_max_bytes": "1MiB", "rotate_max_packets": 1000, "file_name_pattern": "{name}-{seq:6}.pcap"})).unwrap();
        assert_eq!(
            (s.rotate_max_bytes, s.rotate_max_packets),
            (Some(1 << 20), Some(1000))
        );
        let t = time::Date::from_calendar_date(2026, time::Month::November, 28)
            .unwrap()
            .midnight()
            .assume_utc();
        assert_eq!(
            s.file_path(Path::new("/r"), t, 12).unwrap().full(),
            PathBuf::from("/r/h-000012.pcap")
        );
        let e = spec(
            json!({"name": "h", "conn_type": "udp", "address": ["", 1], "rotate_max_packets": 0}),
        )
        .unwrap_err();
        assert_eq!(e.key, "rotate_max_packets");
        let e = spec(json!({"name": "h", "conn_type": "udp", "address": ["", 1], "file_name_pattern": "{name:3}.pcap"})).unwrap_err();
        assert!(e.message.contains("only {seq} takes a width"), "{e}");
        let e = spec(json!({"name": "h", "conn_type": "udp", "address": ["", 1], "seq": 5}))
            .unwrap_err();
        assert_eq!(e.key, "seq");
    }

    #[test]
    fn api_fields_become_a_handler_and_their_errors_name_the_field_sent() {
        let start = |fields: Value| {
            HandlerSpec::from_api_fields("h", fields.as_object().unwrap().clone())
                .map_err(|e| e.to_string())
        };
        let s = start(json!({"port": "8500", "conn_type": "udp", "name": "other",
                             "service_host": "127.0.0.1", "service_port": "8080", "pass": 3}))
        .unwrap();
        assert_eq!((s.name.as_str(), s.origin), ("h", Origin::Api));
        assert_eq!(
            s.address,
            Address {
                host: String::new(),
                port: 8500
            }
        );
        assert_eq!(s.metadata, vec![("pass".to_string(), json!(3))]);
        let s = start(json!({"port": 0, "conn_type": "ethernet", "loc": "eth0"})).unwrap();
        assert_eq!((s.conn_type, s.address.port), (ConnType::Ethernet, 0));
        for (fields, want) in [
            (
                json!({"port": 1}),
                "conn_type: is required (udp, tcp or ethernet)",
            ),
            (
                json!({"port": 1, "conn_type": "bogus"}),
                "conn_type: \"bogus\" is not one of udp, tcp, ethernet",
            ),
            (
                json!({"port": 1, "conn_type": 5}),
                "conn_type: must be a string, got 5",
            ),
            (json!({"conn_type": "udp"}), "port: is required"),
            (
                json!({"conn_type": "udp", "port": "abc"}),
                "port: must be a whole number, got \"abc\"",
            ),
            (
                json!({"conn_type": "udp", "port": "70000"}),
                "port: 70000 is out of range 1..65535",
            ),
            (
                json!({"conn_type": "udp", "port": "-1"}),
                "port: -1 is out of range 1..65535",
            ),
            (
                json!({"conn_type": "udp", "port": 0}),
                "port: 0 is out of range 1..65535",
            ),
            (
                json!({"conn_type": "udp", "port": 1, "loc": 7}),
                "loc: must be a string, got 7",
            ),
            (
                json!({"conn_type": "tcp", "port": 1}),
                "loc: tcp needs a host",
            ),
            (
                json!({"conn_type": "udp", "port": 1, "loc": "a b"}),
                "loc: host \"a b\" has ' '",
            ),
            (
                json!({"conn_type": "udp", "port": 1, "log_dir_path": "/x"}),
                "log_dir_path: not accepted over the API",
            ),
            (
                json!({"conn_type": "udp", "port": 1, "address": ["", 1]}),
                "address: not accepted over the API",
            ),
            (
                json!({"conn_type": "udp", "port": 1, "path": "/etc"}),
                "path: \"/etc\" is absolute",
            ),
            (
                json!({"conn_type": "udp", "port": 1, "on_close": ["/bin/true"]}),
                "on_close: commands can only be configured in the config file",
            ),
        ] {
            let e = start(fields.clone()).unwrap_err();
            assert!(e.starts_with(want), "{fields}: {e}");
        }
    }

    #[test]
    fn typos_of_keys_are_refused_with_a_suggestion_and_metadata_is_kept() {
        let base = |k: &str| json!({"name": "h", "conn_type": "udp", "address": ["", 1], k: "4"});
        for (typo, meant) in [
            ("max_file", "max_files"),
            ("rotate_log_idex", "rotate_log_index"),
            ("rotate_max_byte", "rotate_max_bytes"),
            ("file_name_patern", "file_name_pattern"),
            ("fsync_interval", "fsync_interval_s"),
            ("conn_typ", "conn_type"),
            ("adress", "address"),
        ] {
            for e in [spec(base(typo)).unwrap_err(), api(base(typo)).unwrap_err()] {
                assert_eq!(e.key, typo);
                assert!(
                    e.message.contains(&format!("did you mean \"{meant}\"?")),
                    "{e}"
                );
            }
        }
        // `port` is a key over the API only.
        assert!(spec(base("prot")).is_ok());
        assert!(api(base("prot"))
            .unwrap_err()
            .message
            .contains("did you mean \"port\"?"));
        let h = spec(json!({"name": "h", "conn_type": "udp", "address": ["", 1],
            "pass": 1, "mission": "m", "station": "s", "orbit": 2, "spacecraft": "x",
            "vcid": 0, "apid": 7, "site": "a", "antenna": "b", "band": "S"}))
        .unwrap();
        assert_eq!(h.metadata.len(), 10);
        // Rotate: metadata passes, typos of handler and API keys do not.
        let fields = |v: Value| v.as_object().unwrap().clone();
        let rotated = h
            .with_metadata(&fields(
                json!({"pass": 2, "mission": "n", "station": "t", "orbit": 3}),
            ))
            .unwrap();
        assert_eq!(rotated.key_value("pass").as_deref(), Some("2"));
        for (typo, meant) in [("max_file", "max_files"), ("prot", "port"), ("lco", "loc")] {
            let e = h.with_metadata(&fields(json!({typo: "3"}))).unwrap_err();
            assert_eq!(e.key, typo);
            assert!(
                e.message.contains(&format!("did you mean \"{meant}\"?")),
                "{e}"
            );
        }
    }
}
