//! One handler's definition: [`HandlerSpec`], validated from AIT's keys by
//! [`HandlerSpec::from_json`], whichever way it comes ([`Origin`]).
//!
//! | file | its job |
//! |---|---|
//! | `mod.rs` | [`HandlerSpec`]; reading (each key of [`KEYS`] in turn, then the metadata), the API's fields, `to_json`, rotate's metadata, `{key}` values |
//! | `keys.rs` | [`KEYS`]: every handler key declared once (name, what it takes, default, doc line, sources, how it is read and shown) |
//! | `values.rs` | the values that need more than the field reader: names, path patterns, transforms, commands, `sequence_check`, `interface` |
//! | `metadata.rs` | every other key: metadata, reserved keys, control characters |
//! | `paths.rs` | the patterns rendered into checked places ([`crate::files::paths::CapturePath`]) |
//! | `ship.rs` | [`ShipSpec`], store and forward's settings |

mod keys;
mod metadata;
mod paths;
mod ship;
mod values;

use std::time::Duration;

use serde_json::{json, Map, Value};

use super::address::Address;
use super::choices::{ConnType, Direction, Precision, Timestamps};
use super::fields::{field_err, FieldError, Fields};
use super::relay_target::RelayTarget;
use super::typos;
use crate::files::pattern::Pattern;
use crate::files::rotation::{RotationRule, RotationUnit};
use crate::units::framing::Framing;
use crate::units::sequence::SequenceCheck;
use crate::units::transform::Transform;

pub use keys::{is_handler_key, Key, Shown, HANDLER_KEYS, KEYS};
pub use metadata::{metadata_entry, metadata_text, MAX_METADATA_KEYS, MAX_METADATA_VALUE};
pub use ship::ShipSpec;
pub use values::validate_name;

use metadata::refuse_control_characters;

/// AIT's default file name pattern.
pub const DEFAULT_FILE_NAME_PATTERN: &str = "%Y-%m-%d-%H-%M-%S-{name}.pcap";
/// Default requested socket receive buffer. The kernel doubles the request and
/// charges each datagram its buffer's true size (measured: 832 bytes for a 64-byte
/// datagram, 2,304 for a 1,024-byte one). A 100 ms disk stall at 200,000
/// datagrams/s is 20,000 datagrams: 16.6 MB at 64 bytes, 46 MB at 1 KiB; 24 MiB
/// doubled (48 MiB) holds either.
pub const DEFAULT_RCVBUF_BYTES: usize = 24 << 20;
/// Each forward target's queue by default: 4 MiB, a second of 1 KiB units
/// at 4,000 a second, or a quarter second at 16,000.
pub const DEFAULT_FORWARD_QUEUE_BYTES: usize = 4 << 20;
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
    /// Where each unit recorded is also relayed, live (`forward`).
    pub forward: Vec<RelayTarget>,
    /// Each forward target's queue, in bytes.
    pub forward_queue_bytes: usize,
    /// Every other key with a string or number value, in the order given.
    pub metadata: Vec<(String, Value)>,
    pub origin: Origin,
}

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

/// A handler being read: the fields given, where they come from, and the
/// handler so far (every key not yet read holds a placeholder).
pub struct Reading<'a> {
    /// The key being read.
    pub key: &'static str,
    pub fields: Fields<'a>,
    pub origin: Origin,
    pub spec: HandlerSpec,
}

impl Reading<'_> {
    /// Whether the key being read is given (not absent, not `null`).
    fn given(&self) -> bool {
        self.fields.get(self.key).is_some()
    }

    /// An error about the key being read.
    pub(super) fn error(&self, message: impl Into<String>) -> FieldError {
        field_err(self.key, message)
    }

    /// Refuses the key over the API (store and forward is the config file's).
    pub(super) fn config_file_only(&self) -> Result<(), FieldError> {
        match self.origin == Origin::Api && self.given() {
            true => Err(self.error(
                "store and forward can only be configured in the config file, not over the API",
            )),
            false => Ok(()),
        }
    }

    /// The ship settings for a key that goes with `ship` (`None` without
    /// `ship`); refuses such a key given without `ship`.
    pub(super) fn with_ship(&mut self) -> Result<Option<&mut ShipSpec>, FieldError> {
        match (&mut self.spec.ship, self.fields.get(self.key)) {
            (Some(ship), _) => Ok(Some(ship)),
            (None, Some(_)) => Err(field_err(
                self.key,
                "only applies with ship (a command as a list)",
            )),
            (None, None) => Ok(None),
        }
    }
}

impl HandlerSpec {
    /// Validates one handler definition (a JSON object with AIT's keys): each
    /// key of [`KEYS`] in turn, then the metadata (every other key).
    pub fn from_json(obj: &Map<String, Value>, origin: Origin) -> Result<HandlerSpec, FieldError> {
        refuse_control_characters(obj)?;
        refuse_typos(obj, origin == Origin::Api)?;
        let mut r = Reading {
            key: "",
            fields: Fields::new(obj),
            origin,
            spec: HandlerSpec::unread(origin),
        };
        for key in KEYS {
            r.key = key.name;
            let kinds = key.sources;
            if r.fields.get(key.name).is_some()
                && !kinds.is_empty()
                && !kinds.contains(&r.spec.conn_type)
            {
                let names: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
                return Err(field_err(
                    key.name,
                    format!(
                        "only applies to {} handlers, not {}",
                        names.join(" and "),
                        r.spec.conn_type
                    ),
                ));
            }
            (key.read)(&mut r)?;
        }
        let mut spec = r.spec;

        for (key, value) in obj {
            if is_handler_key(key) {
                continue;
            }
            spec.metadata.push(metadata_entry(key, value)?);
        }
        if spec.metadata.len() > MAX_METADATA_KEYS {
            return Err(field_err(
                "metadata",
                format!(
                    "{} metadata keys; a handler carries at most {MAX_METADATA_KEYS}",
                    spec.metadata.len()
                ),
            ));
        }
        spec.check_pattern_keys()?;
        Ok(spec)
    }

    /// A handler before its keys are read: each field holds a placeholder
    /// that the key reading it replaces.
    fn unread(origin: Origin) -> HandlerSpec {
        HandlerSpec {
            name: String::new(),
            conn_type: ConnType::Udp,
            address: Address {
                host: String::new(),
                port: 0,
            },
            path: None,
            file_name_pattern: Pattern::default(),
            rotation: None,
            rotate_log_index: RotationUnit::Day,
            rotate_log_delta: 1,
            pre_write_transforms: Vec::new(),
            framing: Framing::None,
            sequence_check: None,
            fecf: false,
            drop_bad_frames: false,
            rcvbuf_bytes: DEFAULT_RCVBUF_BYTES,
            rotate_max_bytes: None,
            rotate_max_packets: None,
            connect_timeout: Duration::ZERO,
            reconnect_max: Duration::ZERO,
            direction: Direction::Both,
            interface: None,
            record_source: false,
            timestamps: Timestamps::Kernel,
            timestamp_precision: Precision::Micro,
            fsync_interval: None,
            max_files: None,
            max_bytes: None,
            max_age: None,
            on_close: Vec::new(),
            ship: None,
            forward: Vec::new(),
            forward_queue_bytes: DEFAULT_FORWARD_QUEUE_BYTES,
            metadata: Vec::new(),
            origin,
        }
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
    /// file of API-added handlers stores): the keys [`Shown::Set`], then the
    /// metadata; `from_json(to_json())` gives it back.
    pub fn to_json(&self) -> Map<String, Value> {
        let mut m = Map::new();
        for (key, shown) in self.shown() {
            if let Shown::Set(v) = shown {
                m.insert(key.into(), v);
            }
        }
        for (k, v) in &self.metadata {
            m.insert(k.clone(), v.clone());
        }
        m
    }

    /// Each key of [`KEYS`] that applies to this handler's kind of source, in
    /// the table's order, with its value (the metadata is not included).
    pub fn shown(&self) -> impl Iterator<Item = (&'static str, Shown)> + '_ {
        KEYS.iter()
            .filter(|k| k.sources.is_empty() || k.sources.contains(&self.conn_type))
            .map(|k| (k.name, (k.show)(self)))
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
}

#[cfg(test)]
mod documented;
#[cfg(test)]
mod forward_tests;
#[cfg(test)]
mod tests;
